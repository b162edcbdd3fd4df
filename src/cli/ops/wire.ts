/**
 * The ops protocol: the channel names and the JSON shapes of requests and replies. A refusal is
 * `{ "error": { "code", "message" } }` so its code survives both direct requests and fan-outs.
 */
import type { NodeId } from '../../index.js';
import type { ExecResult } from '../exec.js';

export const OPS_CHANNELS = {
  info: 'ops/info',
  peers: 'ops/peers',
  routes: 'ops/routes',
  topology: 'ops/topology',
  ping: 'ops/ping',
  trace: 'ops/trace',
  exec: 'ops/exec',
  /** The hosts the node has seen (its inventory), reachable or not, with their facts. */
  inventory: 'ops/inventory',
  forget: 'ops/forget',
  perf: 'ops/perf',
  /** The node's counters (node.stats()). */
  stats: 'ops/stats',
  /** Served to operators and to every node of the map: the target end of ping and trace. */
  echo: 'ops/echo',
  /** Served to operators and to every node of the map: this host's name and labels (the inventory reads them). */
  facts: 'ops/facts',
  /** Served to operators and to every node of the map: the far end of perf (discards, or sends what is asked). */
  sink: 'ops/sink',
} as const;

export interface FactsReply {
  readonly nodeId: NodeId;
  readonly name?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly version: string;
}

export interface InventoryHost {
  readonly nodeId: NodeId;
  readonly name?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** In the answering node's map now. */
  readonly reachable: boolean;
  /** ISO time it was last in the map. */
  readonly lastReachable: string;
  readonly firstSeen: string;
}

export interface InventoryReply {
  readonly self: NodeId;
  readonly hosts: InventoryHost[];
  /** Hosts forgotten because the inventory was full. */
  readonly evicted: number;
}

export interface ForgetReply {
  readonly nodeId: NodeId;
  /** It was in the inventory. */
  readonly forgotten: boolean;
  /** It is in the map now (it will be remembered again). */
  readonly reachable: boolean;
}

export interface ErrorReply {
  readonly error: { readonly code: string; readonly message: string };
}

export interface InfoReply {
  readonly nodeId: NodeId;
  /** Where the node can be dialed (for a wildcard listen address: its first interface address). */
  readonly address: string;
  /** Every dialable address (a wildcard listen address expanded to the host's interfaces). */
  readonly addresses: string[];
  /** The listen address as configured (may be 0.0.0.0:PORT). */
  readonly listen: string;
  readonly version: string;
  readonly uptimeMs: number;
  readonly peers: number;
  /** Nodes of the map this node routes to, itself included. */
  readonly nodes: number;
  readonly commands: string[];
  readonly allowShell: boolean;
}

export interface PeerReply {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly transport: string;
  readonly direction: 'inbound' | 'outbound';
  readonly rttMs: number;
  readonly streams: number;
}

export interface RouteReply {
  readonly nodeId: NodeId;
  readonly nextHop: NodeId;
  readonly cost: number;
  readonly hops: number;
}

export interface TopologyReply {
  /** The node that answered. */
  readonly self: NodeId;
  readonly nodes: NodeId[];
  /** Links both ends announce (the ones routes use), once per direction. */
  readonly links: Array<{ readonly from: NodeId; readonly to: NodeId; readonly cost: number }>;
}

export interface PingRequest {
  readonly target: string;
  /** Tries (1..100, default 3). */
  readonly count?: number;
  /** Pause between tries (0..10000 ms, default 200). */
  readonly intervalMs?: number;
  /** Per try, and for opening the echo stream (1..60000 ms, default 2000). */
  readonly timeoutMs?: number;
}

export interface PingTry {
  readonly seq: number;
  /** Round trip in ms; absent when the try failed. */
  readonly ms?: number;
  readonly error?: { readonly code: string; readonly message: string };
}

export interface PingReply {
  readonly from: NodeId;
  readonly target: NodeId;
  /** Opening the echo stream (a relayed stream includes its end-to-end TLS handshake). */
  readonly setupMs?: number;
  readonly tries: PingTry[];
}

export interface TraceRequest {
  readonly target: string;
  /** Tries per hop (1..10, default 1). */
  readonly count?: number;
  readonly timeoutMs?: number;
}

export interface TraceHop {
  /** 0 is the answering node itself. */
  readonly hop: number;
  readonly nodeId: NodeId;
  /** Route cost from the answering node. */
  readonly cost: number;
  /** Best round trip to this hop over the path; absent when no try succeeded. */
  readonly ms?: number;
  readonly tries: PingTry[];
}

export interface TraceReply {
  readonly from: NodeId;
  readonly target: NodeId;
  readonly hops: TraceHop[];
}

export interface ExecRequest {
  /** The allow-list name of the command. */
  readonly command: string;
  /** Appended to its argv (or $1.. of its script); only for commands with allowArgs. */
  readonly args?: readonly string[];
  /** Lower the host's limit for this run (the host's configured limit is the ceiling). */
  readonly timeoutMs?: number;
}

export type ExecReply = ExecResult;

export interface PerfRequest {
  readonly target: NodeId;
  /** Bytes each way (default 8 MiB, at most 256 MiB). */
  readonly bytes?: number;
  /** Round trips timed (default 50). */
  readonly count?: number;
  readonly timeoutMs?: number;
}

export interface PerfDirection {
  readonly bytes: number;
  readonly ms: number;
  readonly mbitPerS: number;
}

export interface PerfReply {
  readonly from: NodeId;
  readonly target: NodeId;
  /** The route the daemon uses, both ends included. */
  readonly path: NodeId[];
  /** 'direct': a connection to the target; 'relayed': through the hops of `path`. */
  readonly way: 'direct' | 'relayed';
  readonly transport: string;
  readonly rtt: { samples: number; lost: number; minMs: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number };
  /** From the daemon to the target. */
  readonly up: PerfDirection;
  /** From the target to the daemon. */
  readonly down: PerfDirection;
}
