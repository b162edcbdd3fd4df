import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { PnetError } from '../errors.js';
import { Identity, parseEd25519PrivateKeyPem, type IdentityOptions } from './identity.js';

/** A PEM Ed25519 key is ~120 bytes; anything far bigger is not a key file. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

const warnedPaths = new Set<string>();

function keyFileError(path: string, reason: string, cause?: unknown): PnetError {
  return new PnetError('ERR_KEY_FILE', `key file ${path}: ${reason}`, cause === undefined ? undefined : { cause });
}

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${e.code})`;
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ENOTDIR':
      return 'a parent path component is not a directory';
    case 'ELOOP':
      return 'too many symbolic links';
    default:
      return e?.code ? `${e.code}: ${e.message}` : String(err);
  }
}

/**
 * Reads a key file. Returns `undefined` if it does not exist.
 * @throws PnetError ERR_KEY_FILE
 */
async function readKeyFile(path: string): Promise<{ pem: string; mode: number } | undefined> {
  let handle;
  try {
    handle = await open(path, fsConstants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw keyFileError(path, `cannot open: ${describeFsError(err)}`, err);
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw keyFileError(path, 'is a directory, not a file');
    if (!stat.isFile()) throw keyFileError(path, 'is not a regular file');
    if (stat.size > MAX_KEY_FILE_BYTES) throw keyFileError(path, `is ${stat.size} bytes, too large for a key file`);
    const pem = await handle.readFile({ encoding: 'utf8' });
    return { pem, mode: stat.mode };
  } catch (err) {
    if (err instanceof PnetError) throw err;
    throw keyFileError(path, `cannot read: ${describeFsError(err)}`, err);
  } finally {
    await handle.close().catch(() => {});
  }
}

function warnIfShared(path: string, mode: number): void {
  if (process.platform === 'win32' || (mode & 0o077) === 0 || warnedPaths.has(path)) return;
  warnedPaths.add(path);
  process.emitWarning(
    `key file ${path} is accessible by group/others (mode ${(mode & 0o777).toString(8).padStart(3, '0')}); run: chmod 600 ${path}`,
    { code: 'PNET_KEY_FILE_MODE' },
  );
}

/** Writes `text` to a new temp file next to `path` with mode 0o600 and fsyncs it; returns the temp path. */
async function writeTemp(path: string, text: string): Promise<string> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw keyFileError(path, `cannot create directory ${dir}: ${describeFsError(err)}`, err);
  }
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let handle;
  try {
    handle = await open(tmp, 'wx', 0o600);
  } catch (err) {
    throw keyFileError(path, `cannot create ${tmp}: ${describeFsError(err)}`, err);
  }
  try {
    await handle.chmod(0o600); // in case of an unusual umask/ACL default
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw keyFileError(path, `cannot write: ${describeFsError(err)}`, err);
  }
  await handle.close();
  return tmp;
}

async function syncDir(dir: string): Promise<void> {
  // Best effort: makes the rename durable on POSIX; not possible on Windows.
  try {
    const handle = await open(dir, fsConstants.O_RDONLY);
    await handle.sync().finally(() => handle.close());
  } catch {
    /* ignore */
  }
}

/**
 * Writes the identity's private key (PKCS#8 PEM) to `path` with mode 0o600,
 * atomically (temp file + rename), replacing any existing file. Creates the
 * parent directory with mode 0o700 if missing.
 * @throws PnetError ERR_KEY_FILE
 */
export async function saveIdentity(identity: Identity, path: string): Promise<void> {
  const target = resolve(path);
  const tmp = await writeTemp(target, identity.keyPem);
  try {
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw keyFileError(target, `cannot replace: ${describeFsError(err)}`, err);
  }
  await syncDir(dirname(target));
}

/**
 * Places the temp file at `target` only if nothing is there yet (hard link,
 * which fails on EEXIST), so two processes starting at once never overwrite
 * each other's new key. Falls back to rename where hard links are unsupported.
 * Returns false if `target` already existed.
 */
async function publishIfAbsent(tmp: string, target: string): Promise<boolean> {
  try {
    await link(tmp, target);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      await rename(tmp, target);
      return true;
    }
    throw keyFileError(target, `cannot create: ${describeFsError(err)}`, err);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/**
 * Loads the Ed25519 private key (PEM PKCS#8) at `path`, or, if there is no
 * file there, generates a new identity and stores its key there (mode 0o600,
 * parent directory created with 0o700). A key file readable by group/others
 * is still loaded; a process warning (code PNET_KEY_FILE_MODE) is emitted
 * once per path.
 *
 * @throws PnetError ERR_KEY_FILE naming the path when the file cannot be
 *   read (permissions, a directory, ...) or does not hold an unencrypted
 *   Ed25519 private key in PEM.
 */
export async function loadOrCreateIdentity(path: string, options?: IdentityOptions): Promise<Identity> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new PnetError('ERR_KEY_FILE', `key file path must be a non-empty string, got ${JSON.stringify(path)}`);
  }
  const target = resolve(path);
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await readKeyFile(target);
    if (existing !== undefined) {
      const key = parseEd25519PrivateKeyPem(existing.pem);
      if (typeof key === 'string') throw keyFileError(target, key);
      warnIfShared(target, existing.mode);
      return Identity.fromPrivateKey(key, options);
    }
    const identity = await Identity.generate(options);
    const tmp = await writeTemp(target, identity.keyPem);
    if (await publishIfAbsent(tmp, target)) {
      await syncDir(dirname(target));
      return identity;
    }
    // Another process created the file between our read and our link: load theirs.
  }
  throw keyFileError(target, 'file keeps appearing and disappearing; giving up');
}
