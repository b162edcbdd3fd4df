// Process functions of the UDP addon for `pnet node`'s start (src/cli/huge-pages.ts):
//   execve(path, argv, env) replaces this process image, same pid, stdio kept; returns only on
//     failure, with the reason ("execve: <strerror>"). Node has no execve before v23 (process.execve).
//   glibcVersion: the C library's version at run time ("2.36"), or null when it is not glibc.
// glibc reads GLIBC_TUNABLES only at a process's start: re-executing is the only way to apply one.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#if defined(__linux__)
#include <fcntl.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif
#endif

namespace {

#if defined(__linux__)
// Copies a JS array of strings into owned storage; false when an element is not a string.
bool stringsOf(const Napi::Array& array, std::vector<std::string>* out) {
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value value = array.Get(i);
    if (!value.IsString()) return false;
    out->push_back(value.As<Napi::String>().Utf8Value());
  }
  return true;
}

std::vector<char*> pointersTo(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

Napi::Value Execve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "execve(path, argv[], env[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> argv;
  std::vector<std::string> envp;
  if (!stringsOf(info[1].As<Napi::Array>(), &argv) || !stringsOf(info[2].As<Napi::Array>(), &envp)) {
    Napi::TypeError::New(env, "execve: argv and env must hold strings").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<char*> argvPointers = pointersTo(argv);
  std::vector<char*> envPointers = pointersTo(envp);
  // Node marks stdin, stdout and stderr close-on-exec at its start: the new image must keep them.
  int stdioFlags[3];
  for (int fd = 0; fd < 3; fd++) {
    stdioFlags[fd] = fcntl(fd, F_GETFD);
    if (stdioFlags[fd] >= 0 && (stdioFlags[fd] & FD_CLOEXEC)) fcntl(fd, F_SETFD, stdioFlags[fd] & ~FD_CLOEXEC);
  }
  ::execve(path.c_str(), argvPointers.data(), envPointers.data());
  int err = errno;
  for (int fd = 0; fd < 3; fd++) {
    if (stdioFlags[fd] >= 0) fcntl(fd, F_SETFD, stdioFlags[fd]);
  }
  return Napi::String::New(env, std::string("execve: ") + std::strerror(err));
}
#endif

Napi::Value GlibcVersion(Napi::Env env) {
#if defined(__linux__) && defined(__GLIBC__)
  return Napi::String::New(env, gnu_get_libc_version());
#else
  return env.Null();
#endif
}

}  // namespace

// Called by both of udp.cc's Init (the batching socket and the stub).
void DefineProcessFunctions(Napi::Env env, Napi::Object exports) {
#if defined(__linux__)
  exports.Set("execve", Napi::Function::New(env, Execve, "execve"));
#endif
  exports.Set("glibcVersion", GlibcVersion(env));
}
