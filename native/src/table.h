// pnet native routing table: topology graph, shortest paths from the local node, next hops.
// Plain C++17, no Node-API here (the bindings are in addon.cc). Semantics: docs/ROUTING-TABLE.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace pnet {

constexpr uint32_t kIdBytes = 32;
constexpr size_t kRecordBytes = 64;  // per handle: id (32 bytes), next hop (4), hash (8): one cache line
constexpr uint32_t kMaxCost = 0xFFFFFF;     // costs are integers in [1, kMaxCost]
constexpr uint64_t kInf = UINT64_MAX;       // distance of an unreachable node
constexpr int32_t kNone = -1;               // "no node": unknown id, no route, no parent
constexpr uint32_t kNoRank = 0xFFFFFFFFu;   // rank of a node that is not a neighbour of the local node
constexpr uint32_t kMaxNodes = 0xFFFFFEu;   // handles fit in 24 bits of a hash slot

enum class Mode : int { None = 0, Incremental = 1, Full = 2 };

struct FlushResult {
  Mode mode = Mode::None;
  uint32_t changed = 0;  // destinations whose next hop or distance changed
  uint32_t freed = 0;    // handles given back (removed nodes and orphans)
};

// A plain array of trivially copyable values with amortised growth; large ones ask for huge pages.
template <typename T>
class PodArray {
 public:
  PodArray() = default;
  PodArray(const PodArray&) = delete;
  PodArray& operator=(const PodArray&) = delete;
  ~PodArray();
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return size_; }
  void resize(size_t n, T fill);   // grows (filling new slots) or shrinks
  void assignFill(size_t n, T fill);
  void push_back(T v) {
    if (size_ == cap_) reserve(cap_ ? cap_ * 2 : 64);
    data_[size_++] = v;
  }
  void reserve(size_t n);

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

struct Edge {
  uint32_t to;
  uint32_t cost;
  uint32_t rpos;  // index of the mirror entry in radj[to]
};

struct RevEdge {
  uint32_t from;
  uint32_t pos;   // index of the edge in adj[from]
};

struct RouteList {      // packed routes or route changes
  std::vector<uint8_t> ids;     // n * 32 bytes: destinations
  std::vector<int32_t> hops;    // next-hop handles, kNone when unreachable
  std::vector<double> costs;    // distances, -1 when unreachable
  std::vector<uint32_t> hopCounts;  // links along the path (routes() only)
};

class RoutingTable {
 public:
  explicit RoutingTable(const uint8_t* localId);

  // --- graph -------------------------------------------------------------------------------
  // Replaces the outgoing links of `id` (targets: k packed ids; costs: k values in [1, kMaxCost],
  // checked by the caller). Self links are ignored; a target given twice keeps its smallest cost.
  // Returns whether the graph changed.
  bool setLinks(const uint8_t* id, const uint8_t* targets, const uint32_t* costs, size_t k);
  // Removes a node with all its in- and out-links. False when unknown or the local node.
  bool removeNode(const uint8_t* id);

  // --- recompute -----------------------------------------------------------------------------
  bool dirty() const { return dirty_; }
  FlushResult flush();        // recompute if dirty (incremental where it pays), then free handles
  FlushResult forceFull();    // full recomputation (benchmarks, tests)

  // --- lookups (call flush() first; the bindings do) ----------------------------------------
  int32_t handleOf(const uint8_t* id) const;  // present node's handle or kNone
  const uint8_t* key(int32_t h) const { return records_.data() + size_t(h) * kRecordBytes; }
  bool validHandle(int64_t h) const { return h >= 0 && h < static_cast<int64_t>(count_) && present_[h]; }
  int32_t nextHop(const uint8_t* id) const;
  void nextHopBatch(const uint8_t* ids, size_t n, int32_t* out) const;
  // Groups: writes the destinations' positions (indexes) and their ids (outIds, n*32) grouped by
  // next hop, groups ordered by next-hop id bytes, the unreachable group (hop kNone) last; returns
  // pairs (hop handle, end offset).
  std::vector<int32_t> groupByNextHop(const uint8_t* ids, size_t n, uint32_t* indexes, uint8_t* outIds) const;
  int64_t distance(const uint8_t* id) const;  // -1 when unknown or unreachable
  bool path(const uint8_t* id, std::vector<int32_t>& out) const;
  void routes(RouteList& out) const;
  const RouteList& lastChanges() const { return changes_; }
  bool links(const uint8_t* id, std::vector<uint8_t>& targets, std::vector<uint32_t>& costs) const;
  uint32_t size() const { return present_count_; }
  // whether k more nodes can be interned (the table holds at most kMaxNodes)
  bool room(size_t k) const { return free_.size() + (kMaxNodes - count_) >= k; }
  uint64_t edgeCount() const { return edges_; }

 private:
  uint64_t hashId(const uint8_t* id) const;
  int32_t findAny(const uint8_t* id, uint64_t h) const;  // handle even if removed-pending
  int32_t intern(const uint8_t* id);
  void hashInsert(int32_t handle, uint64_t h, const uint8_t* id);
  void hashErase(int32_t handle);
  void hashGrow();
  bool keyLess(int32_t a, int32_t b) const { return std::memcmp(key(a), key(b), kIdBytes) < 0; }

  void removeEdgeAt(uint32_t from, uint32_t pos);
  void addEdge(uint32_t from, uint32_t to, uint32_t cost);
  void logChange(uint32_t u, uint32_t v, uint64_t newCost);
  void orphanCandidate(uint32_t x);
  void updateRanks();

  template <bool Incremental>
  void relax(uint32_t u, uint32_t v, uint32_t cost);
  template <bool Incremental>
  void run();
  void touch(uint32_t v);
  void computeFull();
  bool computeIncremental();  // false: too much affected, caller falls back to full
  void freePending(FlushResult& r);
  void nextRun();
  void addChange(uint32_t x);
  void prepare();
  FlushResult finish(Mode mode);

  uint64_t seed0_, seed1_, seed2_, seed3_;  // hash seeds, random per table
  // Interning: open addressing over 4-byte slots, (8-bit tag << 24) | (handle + 1), 0 = empty; and
  // one 64-byte record per handle: the id, a copy of its next hop and its hash. A batch lookup
  // reads one slot (small enough to stay cached mostly) and one record line.
  PodArray<uint32_t> slots_;
  static uint32_t slotTag(uint64_t h) { return uint32_t(h >> 56); }
  static int32_t slotHandle(uint32_t s) { return static_cast<int32_t>((s & 0xffffffu) - 1); }
  uint64_t mask_ = 0;
  PodArray<uint8_t> records_;
  uint64_t recordHash(int32_t h) const {
    uint64_t v;
    std::memcpy(&v, records_.data() + size_t(h) * kRecordBytes + 40, 8);
    return v;
  }
  void mirrorHop(uint32_t h, int32_t hop) { std::memcpy(records_.data() + size_t(h) * kRecordBytes + kIdBytes, &hop, 4); }
  PodArray<uint8_t> present_;
  std::vector<int32_t> free_;    // sorted descending: back() is the smallest free handle
  uint32_t count_ = 0;           // handles ever allocated (upper bound)
  uint32_t present_count_ = 0;
  size_t hash_count_ = 0;        // entries in slots_ (present or removed-pending)

  // graph
  std::vector<std::vector<Edge>> adj_;
  std::vector<std::vector<RevEdge>> radj_;
  uint64_t edges_ = 0;

  // labels: (distance, next hop, parent)
  PodArray<uint64_t> dist_;
  PodArray<int32_t> hop_;
  PodArray<int32_t> parent_;
  PodArray<uint32_t> rank_;      // rank of local's out-neighbours by id bytes
  std::vector<int32_t> ranked_;  // the nodes that currently have a rank

  // pending changes since the last flush
  bool dirty_ = false;
  bool computed_ = false;
  bool ranksDirty_ = true;
  std::vector<uint32_t> roots_;          // tree edges that got longer or vanished: their heads
  std::vector<uint32_t> sources_;        // nodes whose out-links changed
  std::vector<uint32_t> orphans_;        // nodes that lost links
  std::vector<int32_t> pendingFree_;     // removed nodes, freed at the end of the flush
  PodArray<uint32_t> srcStamp_, orphanStamp_;
  uint32_t batchStamp_ = 1;

  // scratch
  PodArray<uint32_t> scratchStamp_;
  PodArray<uint32_t> scratchCost_;
  uint32_t scratch_ = 0;
  PodArray<uint32_t> runStamp_;   // queued-or-done in this run
  PodArray<uint32_t> aStamp_;     // in the affected set
  PodArray<uint32_t> touchStamp_;
  uint32_t run_ = 0;
  struct Touched { uint32_t node; int32_t hop; uint64_t dist; };
  std::vector<Touched> touched_;
  std::vector<uint32_t> affected_;
  std::vector<uint32_t> order_;
  PodArray<uint64_t> prevDist_;
  PodArray<int32_t> prevHop_;
  mutable std::vector<int32_t> groupScratch_;
  mutable PodArray<uint32_t> groupStamp_;
  mutable PodArray<uint32_t> groupIndex_;
  mutable uint32_t groupRun_ = 0;
  mutable std::vector<uint32_t> depth_;

  RouteList changes_;

  // radix heap (monotone priority queue on integer keys)
  struct Item { uint64_t key; uint32_t node; };
  std::vector<Item> buckets_[65];
  uint64_t heapLast_ = 0;
  size_t heapSize_ = 0;
  void heapReset() { heapLast_ = 0; heapSize_ = 0; for (auto& b : buckets_) b.clear(); }
  void heapPush(uint64_t key, uint32_t node);
  Item heapPop();
};

}  // namespace pnet
