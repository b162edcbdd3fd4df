// pnet native routing table. See table.h and docs/ROUTING-TABLE.md.
#include "table.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <random>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PNET_PREFETCH(p) __builtin_prefetch(p)
#define PNET_LIKELY(x) __builtin_expect(!!(x), 1)
static inline int highBit(uint64_t x) { return 63 - __builtin_clzll(x); }
#else
#include <intrin.h>
#define PNET_PREFETCH(p) ((void)0)
#define PNET_LIKELY(x) (x)
static inline int highBit(uint64_t x) {
  unsigned long i;
  _BitScanReverse64(&i, x);
  return static_cast<int>(i);
}
#endif

namespace pnet {

// ---------------------------------------------------------------------------------------------
// PodArray

namespace {
constexpr size_t kHugeThreshold = size_t(4) << 20;  // ask for huge pages from 4 MiB on
constexpr size_t kHugeAlign = size_t(2) << 20;

void* podAlloc(size_t bytes) {
#if defined(__linux__)
  if (bytes >= kHugeThreshold) {
    void* p = nullptr;
    size_t rounded = (bytes + kHugeAlign - 1) & ~(kHugeAlign - 1);
    if (posix_memalign(&p, kHugeAlign, rounded) == 0) {
      madvise(p, rounded, MADV_HUGEPAGE);
      return p;
    }
  }
#endif
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) std::abort();
  return p;
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// 64x64 -> 128-bit product, halves xor-ed
inline uint64_t mulFold(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
  const __uint128_t p = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
#elif defined(_MSC_VER) && defined(_M_X64)
  uint64_t hi;
  const uint64_t lo = _umul128(a, b, &hi);
  return lo ^ hi;
#else
  const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
  const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
  const uint64_t lo = (mid << 32) | (p00 & 0xffffffffu);
  const uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
  return lo ^ hi;
#endif
}

// whole-id equality without a call or a branch per word
inline bool sameId(const uint8_t* a, const uint8_t* b) {
  return ((load64(a) ^ load64(b)) | (load64(a + 8) ^ load64(b + 8)) | (load64(a + 16) ^ load64(b + 16)) |
          (load64(a + 24) ^ load64(b + 24))) == 0;
}
}  // namespace

template <typename T>
PodArray<T>::~PodArray() {
  std::free(data_);
}

template <typename T>
void PodArray<T>::reserve(size_t n) {
  if (n <= cap_) return;
  T* fresh = static_cast<T*>(podAlloc(n * sizeof(T)));
  if (size_) std::memcpy(fresh, data_, size_ * sizeof(T));
  std::free(data_);
  data_ = fresh;
  cap_ = n;
}

template <typename T>
void PodArray<T>::resize(size_t n, T fill) {
  if (n > cap_) reserve(std::max(n, cap_ * 2));
  for (size_t i = size_; i < n; ++i) data_[i] = fill;
  size_ = n;
}

template <typename T>
void PodArray<T>::assignFill(size_t n, T fill) {
  if (n > cap_) reserve(std::max(n, cap_ * 2));
  std::fill(data_, data_ + n, fill);
  size_ = n;
}

template class PodArray<uint64_t>;
template class PodArray<uint32_t>;
template class PodArray<int32_t>;
template class PodArray<uint8_t>;

// ---------------------------------------------------------------------------------------------
// Interning: open addressing, linear probing, seeded hash (ids are chosen by peers).

RoutingTable::RoutingTable(const uint8_t* localId) {
  std::random_device rd;
  seed0_ = (uint64_t(rd()) << 32) ^ rd() ^ 0x9e3779b97f4a7c15ull;
  seed1_ = (uint64_t(rd()) << 32) ^ rd() ^ 0xc2b2ae3d27d4eb4full;
  seed2_ = (uint64_t(rd()) << 32) ^ rd() ^ 0x165667b19e3779f9ull;
  seed3_ = (uint64_t(rd()) << 32) ^ rd() ^ 0xd6e8feb86659fd93ull;
  slots_.assignFill(1024, 0);
  mask_ = 1023;
  intern(localId);  // handle 0
  rank_[0] = kNoRank;
  dirty_ = true;
}

uint64_t RoutingTable::hashId(const uint8_t* id) const {
  // All 32 bytes count (ids are chosen by peers: a shared prefix must not mean a shared hash),
  // mixed with per-table random seeds by two 64x64->128-bit multiplications.
  const uint64_t x = mulFold(load64(id) ^ seed0_, load64(id + 8) ^ seed1_);
  const uint64_t y = mulFold(load64(id + 16) ^ seed2_, load64(id + 24) ^ seed3_);
  return mulFold(x ^ 0x9e3779b97f4a7c15ull, y ^ seed0_);
}

int32_t RoutingTable::findAny(const uint8_t* id, uint64_t h) const {
  const uint32_t tag = slotTag(h);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const uint32_t s = slots_[i];
    if (s == 0) return kNone;
    if ((s >> 24) == tag) {
      const int32_t handle = slotHandle(s);
      if (sameId(key(handle), id)) return handle;
    }
  }
}

int32_t RoutingTable::handleOf(const uint8_t* id) const {
  const int32_t h = findAny(id, hashId(id));
  return (h >= 0 && present_[h]) ? h : kNone;
}

void RoutingTable::hashGrow() {
  const size_t cap = slots_.size() * 2;
  std::vector<uint32_t> entries;
  entries.reserve(hash_count_);
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i]) entries.push_back(slots_[i]);
  slots_.assignFill(cap, 0);
  mask_ = cap - 1;
  for (uint32_t s : entries) {
    uint64_t i = recordHash(slotHandle(s)) & mask_;
    while (slots_[i]) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void RoutingTable::hashInsert(int32_t handle, uint64_t h, const uint8_t* id) {
  if ((hash_count_ + 1) * 2 > slots_.size()) hashGrow();
  ++hash_count_;
  uint8_t* rec = records_.data() + size_t(handle) * kRecordBytes;
  std::memcpy(rec, id, kIdBytes);
  std::memcpy(rec + 40, &h, 8);
  mirrorHop(uint32_t(handle), kNone);
  uint64_t i = h & mask_;
  while (slots_[i]) i = (i + 1) & mask_;
  slots_[i] = (slotTag(h) << 24) | (uint32_t(handle) + 1);
}

void RoutingTable::hashErase(int32_t handle) {
  uint64_t i = recordHash(handle) & mask_;
  while (slotHandle(slots_[i]) != handle) i = (i + 1) & mask_;
  --hash_count_;
  // backward-shift deletion: pull later entries of the probe run into the hole
  for (uint64_t j = (i + 1) & mask_; slots_[j] != 0; j = (j + 1) & mask_) {
    const uint64_t home = recordHash(slotHandle(slots_[j])) & mask_;
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots_[i] = slots_[j];
    i = j;
  }
  slots_[i] = 0;
}

int32_t RoutingTable::intern(const uint8_t* id) {
  const uint64_t h = hashId(id);
  int32_t n = findAny(id, h);
  if (n >= 0) {
    if (!present_[n]) {  // removed since the last flush: revive the same handle
      present_[n] = 1;
      ++present_count_;
      orphanCandidate(uint32_t(n));
      dirty_ = true;
    }
    return n;
  }
  if (!free_.empty()) {
    n = free_.back();
    free_.pop_back();
  } else {
    n = static_cast<int32_t>(count_++);
    const size_t c = count_;
    records_.resize(c * kRecordBytes, 0);
    present_.resize(c, 0);
    dist_.resize(c, kInf);
    hop_.resize(c, kNone);
    parent_.resize(c, kNone);
    rank_.resize(c, kNoRank);
    srcStamp_.resize(c, 0);
    orphanStamp_.resize(c, 0);
    scratchStamp_.resize(c, 0);
    scratchCost_.resize(c, 0);
    runStamp_.resize(c, 0);
    aStamp_.resize(c, 0);
    touchStamp_.resize(c, 0);
    groupStamp_.resize(c, 0);
    groupIndex_.resize(c, 0);
    adj_.emplace_back();
    radj_.emplace_back();
  }
  hashInsert(n, h, id);
  present_[n] = 1;
  ++present_count_;
  dist_[n] = kInf;
  hop_[n] = kNone;
  parent_[n] = kNone;
  rank_[n] = kNoRank;
  orphanCandidate(uint32_t(n));
  dirty_ = true;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Graph edits

void RoutingTable::addEdge(uint32_t from, uint32_t to, uint32_t cost) {
  auto& out = adj_[from];
  auto& in = radj_[to];
  out.push_back(Edge{to, cost, static_cast<uint32_t>(in.size())});
  in.push_back(RevEdge{from, static_cast<uint32_t>(out.size() - 1)});
  ++edges_;
}

void RoutingTable::removeEdgeAt(uint32_t from, uint32_t pos) {
  auto& out = adj_[from];
  const Edge e = out[pos];
  auto& in = radj_[e.to];
  // drop the mirror entry from in (swap with its last)
  const uint32_t lastIn = static_cast<uint32_t>(in.size() - 1);
  if (e.rpos != lastIn) {
    const RevEdge moved = in[lastIn];
    in[e.rpos] = moved;
    adj_[moved.from][moved.pos].rpos = e.rpos;
  }
  in.pop_back();
  // drop the edge from out (swap with its last)
  const uint32_t lastOut = static_cast<uint32_t>(out.size() - 1);
  if (pos != lastOut) {
    const Edge moved = out[lastOut];
    out[pos] = moved;
    radj_[moved.to][moved.rpos].pos = pos;
  }
  out.pop_back();
  --edges_;
}

void RoutingTable::orphanCandidate(uint32_t x) {
  if (orphanStamp_[x] != batchStamp_) {
    orphanStamp_[x] = batchStamp_;
    orphans_.push_back(x);
  }
}

void RoutingTable::logChange(uint32_t u, uint32_t v, uint64_t newCost) {
  if (srcStamp_[u] != batchStamp_) {
    srcStamp_[u] = batchStamp_;
    sources_.push_back(u);
  }
  // A tree edge that got longer (or vanished): its head's subtree must be recomputed.
  if (parent_[v] == static_cast<int32_t>(u) && newCost > dist_[v] - dist_[u]) roots_.push_back(v);
  if (u == 0) ranksDirty_ = true;
  dirty_ = true;
}

bool RoutingTable::setLinks(const uint8_t* id, const uint8_t* targets, const uint32_t* costs, size_t k) {
  if (k == 0) {
    const int32_t existing = handleOf(id);
    if (existing < 0) return false;
  }
  const uint32_t u = static_cast<uint32_t>(intern(id));
  if (++scratch_ == 0) {  // stamp wrapped
    std::fill(scratchStamp_.data(), scratchStamp_.data() + scratchStamp_.size(), 0u);
    scratch_ = 1;
  }
  order_.clear();
  for (size_t i = 0; i < k; ++i) {
    const uint32_t t = static_cast<uint32_t>(intern(targets + i * kIdBytes));
    if (t == u) continue;
    if (scratchStamp_[t] != scratch_) {
      scratchStamp_[t] = scratch_;
      scratchCost_[t] = costs[i];
      order_.push_back(t);
    } else if (costs[i] < scratchCost_[t]) {
      scratchCost_[t] = costs[i];
    }
  }
  bool changed = false;
  auto& out = adj_[u];
  for (size_t p = out.size(); p-- > 0;) {
    const Edge e = out[p];
    if (scratchStamp_[e.to] == scratch_ && scratchCost_[e.to] != 0) {
      const uint32_t c = scratchCost_[e.to];
      scratchCost_[e.to] = 0;  // seen
      if (c != e.cost) {
        adj_[u][p].cost = c;
        logChange(u, e.to, c);
        changed = true;
      }
    } else {
      removeEdgeAt(u, static_cast<uint32_t>(p));
      logChange(u, e.to, kInf);
      orphanCandidate(e.to);
      orphanCandidate(u);
      changed = true;
    }
  }
  for (uint32_t t : order_) {
    if (scratchCost_[t] == 0) continue;
    addEdge(u, t, scratchCost_[t]);
    logChange(u, t, scratchCost_[t]);
    changed = true;
  }
  if (adj_[u].empty()) orphanCandidate(u);
  return changed;
}

bool RoutingTable::removeNode(const uint8_t* id) {
  const int32_t x = handleOf(id);
  if (x <= 0) return false;  // unknown, or the local node
  const uint32_t ux = static_cast<uint32_t>(x);
  while (!adj_[ux].empty()) {
    const uint32_t p = static_cast<uint32_t>(adj_[ux].size() - 1);
    const uint32_t to = adj_[ux][p].to;
    removeEdgeAt(ux, p);
    logChange(ux, to, kInf);
    orphanCandidate(to);
  }
  while (!radj_[ux].empty()) {
    const RevEdge r = radj_[ux].back();
    removeEdgeAt(r.from, r.pos);
    logChange(r.from, ux, kInf);
    orphanCandidate(r.from);
  }
  present_[ux] = 0;
  --present_count_;
  pendingFree_.push_back(x);
  dirty_ = true;
  return true;
}

bool RoutingTable::links(const uint8_t* id, std::vector<uint8_t>& targets, std::vector<uint32_t>& costs) const {
  const int32_t x = handleOf(id);
  if (x < 0) return false;
  std::vector<Edge> out = adj_[x];
  std::sort(out.begin(), out.end(), [this](const Edge& a, const Edge& b) {
    return std::memcmp(key(int32_t(a.to)), key(int32_t(b.to)), kIdBytes) < 0;
  });
  targets.resize(out.size() * kIdBytes);
  costs.resize(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    std::memcpy(targets.data() + i * kIdBytes, key(int32_t(out[i].to)), kIdBytes);
    costs[i] = out[i].cost;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Shortest paths. Every node's label is (distance, next hop, parent), the smallest in this order:
// distance; then the next hop with the smaller id bytes (rank_); then the parent with the smaller id
// bytes. The label is unique, so any algorithm that computes it gives the same answers.

void RoutingTable::heapPush(uint64_t k, uint32_t node) {
  const int b = (k == heapLast_) ? 0 : 1 + highBit(k ^ heapLast_);
  buckets_[b].push_back(Item{k, node});
  ++heapSize_;
}

RoutingTable::Item RoutingTable::heapPop() {
  if (buckets_[0].empty()) {
    int i = 1;
    while (buckets_[i].empty()) ++i;
    auto& b = buckets_[i];
    uint64_t least = b[0].key;
    for (const Item& it : b) least = std::min(least, it.key);
    heapLast_ = least;
    for (const Item& it : b) {
      const int nb = (it.key == least) ? 0 : 1 + highBit(it.key ^ least);
      buckets_[nb].push_back(it);
    }
    b.clear();
  }
  const Item it = buckets_[0].back();
  buckets_[0].pop_back();
  --heapSize_;
  return it;
}

void RoutingTable::touch(uint32_t v) {
  if (touchStamp_[v] != run_) {
    touchStamp_[v] = run_;
    touched_.push_back(Touched{v, hop_[v], dist_[v]});
  }
}

template <bool Incremental>
inline void RoutingTable::relax(uint32_t u, uint32_t v, uint32_t cost) {
  const uint64_t nd = dist_[u] + cost;
  const int32_t ch = (u == 0) ? static_cast<int32_t>(v) : hop_[u];
  const uint64_t dv = dist_[v];
  if (nd < dv) {
    if (Incremental) touch(v);
    dist_[v] = nd;
    hop_[v] = ch;
    parent_[v] = static_cast<int32_t>(u);
    heapPush(nd, v);
    runStamp_[v] = run_;
  } else if (nd == dv) {
    const int32_t hv = hop_[v];
    if (ch != hv) {
      if (rank_[ch] < rank_[hv]) {
        if (Incremental) touch(v);
        hop_[v] = ch;
        parent_[v] = static_cast<int32_t>(u);
        if (runStamp_[v] != run_) {  // its subtree must learn the better next hop
          runStamp_[v] = run_;
          heapPush(nd, v);
        }
      }
    } else if (parent_[v] != static_cast<int32_t>(u) && keyLess(static_cast<int32_t>(u), parent_[v])) {
      if (Incremental) touch(v);
      parent_[v] = static_cast<int32_t>(u);
    }
  }
}

template <bool Incremental>
void RoutingTable::run() {
  while (heapSize_) {
    const Item it = heapPop();
    const uint32_t x = it.node;
    if (it.key != dist_[x]) continue;  // stale entry
    const auto& out = adj_[x];
    const Edge* e = out.data();
    const Edge* end = e + out.size();
    for (; e != end; ++e) relax<Incremental>(x, e->to, e->cost);
  }
}

void RoutingTable::nextRun() {
  if (++run_ == 0) {
    std::fill(runStamp_.data(), runStamp_.data() + runStamp_.size(), 0u);
    std::fill(aStamp_.data(), aStamp_.data() + aStamp_.size(), 0u);
    std::fill(touchStamp_.data(), touchStamp_.data() + touchStamp_.size(), 0u);
    run_ = 1;
  }
}

void RoutingTable::updateRanks() {
  for (int32_t h : ranked_) rank_[h] = kNoRank;
  ranked_.clear();
  for (const Edge& e : adj_[0]) ranked_.push_back(static_cast<int32_t>(e.to));
  std::sort(ranked_.begin(), ranked_.end(), [this](int32_t a, int32_t b) { return keyLess(a, b); });
  for (size_t i = 0; i < ranked_.size(); ++i) rank_[ranked_[i]] = static_cast<uint32_t>(i);
  ranksDirty_ = false;
}

void RoutingTable::addChange(uint32_t x) {
  changes_.ids.insert(changes_.ids.end(), key(int32_t(x)), key(int32_t(x)) + kIdBytes);
  changes_.hops.push_back(hop_[x]);
  changes_.costs.push_back(dist_[x] == kInf ? -1.0 : static_cast<double>(dist_[x]));
}

void RoutingTable::computeFull() {
  const size_t n = count_;
  prevDist_.resize(n, kInf);
  prevHop_.resize(n, kNone);
  std::memcpy(prevDist_.data(), dist_.data(), n * sizeof(uint64_t));
  std::memcpy(prevHop_.data(), hop_.data(), n * sizeof(int32_t));
  std::fill(dist_.data(), dist_.data() + n, kInf);
  std::fill(hop_.data(), hop_.data() + n, kNone);
  std::fill(parent_.data(), parent_.data() + n, kNone);
  nextRun();
  heapReset();
  dist_[0] = 0;
  hop_[0] = 0;
  heapPush(0, 0);
  runStamp_[0] = run_;
  run<false>();
  for (uint32_t x = 0; x < n; ++x) mirrorHop(x, hop_[x]);
  for (uint32_t x = 1; x < n; ++x)
    if (dist_[x] != prevDist_[x] || hop_[x] != prevHop_[x]) addChange(x);
}

bool RoutingTable::computeIncremental() {
  nextRun();
  touched_.clear();
  affected_.clear();
  const size_t limit = present_count_ / 4 + 64;
  for (uint32_t r : roots_) {
    if (aStamp_[r] == run_ || dist_[r] == kInf) continue;
    aStamp_[r] = run_;
    affected_.push_back(r);
  }
  for (size_t i = 0; i < affected_.size(); ++i) {
    const uint32_t x = affected_[i];
    for (const Edge& e : adj_[x]) {
      if (parent_[e.to] == static_cast<int32_t>(x) && aStamp_[e.to] != run_) {
        aStamp_[e.to] = run_;
        affected_.push_back(e.to);
      }
    }
    if (affected_.size() > limit) return false;
  }
  for (uint32_t x : affected_) {
    touch(x);
    dist_[x] = kInf;
    hop_[x] = kNone;
    parent_[x] = kNone;
  }
  heapReset();
  for (uint32_t x : affected_) {
    for (const RevEdge& r : radj_[x]) {
      if (aStamp_[r.from] == run_ || dist_[r.from] == kInf) continue;
      relax<true>(r.from, x, adj_[r.from][r.pos].cost);
    }
  }
  for (uint32_t u : sources_) {
    if (aStamp_[u] == run_ || dist_[u] == kInf) continue;
    for (const Edge& e : adj_[u]) relax<true>(u, e.to, e.cost);
  }
  run<true>();
  std::sort(touched_.begin(), touched_.end(), [](const Touched& a, const Touched& b) { return a.node < b.node; });
  for (const Touched& t : touched_) {
    mirrorHop(t.node, hop_[t.node]);
    if (t.node != 0 && (dist_[t.node] != t.dist || hop_[t.node] != t.hop)) addChange(t.node);
  }
  return true;
}

void RoutingTable::freePending(FlushResult& r) {
  std::sort(pendingFree_.begin(), pendingFree_.end());
  pendingFree_.erase(std::unique(pendingFree_.begin(), pendingFree_.end()), pendingFree_.end());
  for (int32_t x : pendingFree_) {
    if (present_[x]) continue;  // revived
    hashErase(x);
    dist_[x] = kInf;
    hop_[x] = kNone;
    parent_[x] = kNone;
    rank_[x] = kNoRank;
    free_.push_back(x);
    ++r.freed;
  }
  if (r.freed) std::sort(free_.begin(), free_.end(), std::greater<int32_t>());
}

FlushResult RoutingTable::finish(Mode mode) {
  FlushResult r;
  r.mode = mode;
  r.changed = static_cast<uint32_t>(changes_.hops.size());
  freePending(r);
  roots_.clear();
  sources_.clear();
  orphans_.clear();
  pendingFree_.clear();
  if (++batchStamp_ == 0) {
    std::fill(srcStamp_.data(), srcStamp_.data() + srcStamp_.size(), 0u);
    std::fill(orphanStamp_.data(), orphanStamp_.data() + orphanStamp_.size(), 0u);
    batchStamp_ = 1;
  }
  dirty_ = false;
  computed_ = true;
  return r;
}

void RoutingTable::prepare() {
  for (uint32_t x : orphans_) {
    if (x != 0 && present_[x] && adj_[x].empty() && radj_[x].empty()) {
      present_[x] = 0;
      --present_count_;
      pendingFree_.push_back(static_cast<int32_t>(x));
    }
  }
  if (ranksDirty_) updateRanks();
  changes_.ids.clear();
  changes_.hops.clear();
  changes_.costs.clear();
}

FlushResult RoutingTable::flush() {
  if (!dirty_) return FlushResult{};
  prepare();
  Mode mode = Mode::Incremental;
  if (!computed_ || !computeIncremental()) {
    changes_.ids.clear();
    changes_.hops.clear();
    changes_.costs.clear();
    // an abandoned incremental attempt changed no label: it stops before resetting any
    computeFull();
    mode = Mode::Full;
  }
  return finish(mode);
}

FlushResult RoutingTable::forceFull() {
  prepare();
  computeFull();
  return finish(Mode::Full);
}

// ---------------------------------------------------------------------------------------------
// Lookups

int32_t RoutingTable::nextHop(const uint8_t* id) const {
  const int32_t h = handleOf(id);
  return h < 0 ? kNone : hop_[h];
}

void RoutingTable::nextHopBatch(const uint8_t* ids, size_t n, int32_t* out) const {
  // A software pipeline, so that the cache misses of ~2*D lookups are in flight at once:
  //   stage 1 (id k + 2D): hash, prefetch its slot (4 bytes a slot: the slots of 1M ids take 8 MiB
  //                        and mostly stay in the last-level cache);
  //   stage 2 (id k + D):  probe the slots, prefetch the handle's record (id + next hop);
  //   stage 3 (id k):      compare the whole id, write the next hop.
  // After a flush the slots hold present nodes only, and records carry the current next hop.
  constexpr size_t D = 24;
  constexpr size_t R = 64;  // ring, > 2 * D, power of two
  uint64_t hs[R];
  int32_t cand[R];
  const uint32_t* slots = slots_.data();
  const uint8_t* records = records_.data();
  const uint64_t mask = mask_;
  auto stage1 = [&](size_t k) {
    const uint64_t h = hashId(ids + k * kIdBytes);
    hs[k & (R - 1)] = h;
    PNET_PREFETCH(slots + (h & mask));
  };
  auto stage2 = [&](size_t k) {
    const uint64_t h = hs[k & (R - 1)];
    const uint32_t tag = slotTag(h);
    int32_t c = kNone;
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
      const uint32_t s = slots[i];
      if (s == 0) break;
      if ((s >> 24) == tag) {
        c = slotHandle(s);
        PNET_PREFETCH(records + size_t(c) * kRecordBytes);
        break;
      }
    }
    cand[k & (R - 1)] = c;
  };
  auto stage3 = [&](size_t k) {
    const int32_t c = cand[k & (R - 1)];
    int32_t r = kNone;
    if (c >= 0) {
      const uint8_t* id = ids + k * kIdBytes;
      const uint8_t* rec = records + size_t(c) * kRecordBytes;
      if (PNET_LIKELY(sameId(rec, id))) {
        std::memcpy(&r, rec + kIdBytes, 4);
      } else {  // 8-bit tag collision: full probe
        const int32_t h = handleOf(id);
        r = h < 0 ? kNone : hop_[h];
      }
    }
    out[k] = r;
  };
  const size_t lead1 = std::min(n, 2 * D);
  const size_t lead2 = std::min(n, D);
  for (size_t k = 0; k < lead1; ++k) stage1(k);
  for (size_t k = 0; k < lead2; ++k) stage2(k);
  size_t k = 0;
  for (; k + 2 * D < n; ++k) {
    stage1(k + 2 * D);
    stage2(k + D);
    stage3(k);
  }
  // drain: stage 2 for the ids that have not had it yet, then stage 3
  for (size_t j = std::max(k + D, lead2); j < n; ++j) stage2(j);
  for (; k < n; ++k) stage3(k);
}

std::vector<int32_t> RoutingTable::groupByNextHop(const uint8_t* ids, size_t n, uint32_t* indexes,
                                                 uint8_t* outIds) const {
  groupScratch_.resize(n);
  nextHopBatch(ids, n, groupScratch_.data());
  if (++groupRun_ == 0) {
    std::fill(groupStamp_.data(), groupStamp_.data() + groupStamp_.size(), 0u);
    groupRun_ = 1;
  }
  std::vector<int32_t> hops;
  std::vector<uint32_t> counts;
  uint32_t unreachable = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t h = groupScratch_[i];
    if (h < 0) {
      ++unreachable;
      continue;
    }
    if (groupStamp_[h] != groupRun_) {
      groupStamp_[h] = groupRun_;
      groupIndex_[h] = static_cast<uint32_t>(hops.size());
      hops.push_back(h);
      counts.push_back(0);
    }
    ++counts[groupIndex_[h]];
  }
  std::vector<uint32_t> order(hops.size());
  for (size_t g = 0; g < order.size(); ++g) order[g] = static_cast<uint32_t>(g);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return keyLess(hops[a], hops[b]); });
  std::vector<uint32_t> start(hops.size());
  std::vector<int32_t> result;
  result.reserve(order.size() * 2 + 2);
  uint32_t at = 0;
  for (uint32_t g : order) {
    start[g] = at;
    at += counts[g];
    result.push_back(hops[g]);
    result.push_back(static_cast<int32_t>(at));
  }
  uint32_t unreachableAt = at;
  if (unreachable) {
    result.push_back(kNone);
    result.push_back(static_cast<int32_t>(n));
  }
  for (size_t i = 0; i < n; ++i) {
    const int32_t h = groupScratch_[i];
    const uint32_t pos = h < 0 ? unreachableAt++ : start[groupIndex_[h]]++;
    indexes[pos] = static_cast<uint32_t>(i);
    std::memcpy(outIds + size_t(pos) * kIdBytes, ids + i * kIdBytes, kIdBytes);
  }
  return result;
}

int64_t RoutingTable::distance(const uint8_t* id) const {
  const int32_t h = handleOf(id);
  if (h < 0 || dist_[h] == kInf) return -1;
  return static_cast<int64_t>(dist_[h]);
}

bool RoutingTable::path(const uint8_t* id, std::vector<int32_t>& out) const {
  out.clear();
  int32_t h = handleOf(id);
  if (h < 0 || dist_[h] == kInf) return false;
  while (h != kNone) {
    out.push_back(h);
    h = parent_[h];
  }
  std::reverse(out.begin(), out.end());
  return true;
}

void RoutingTable::routes(RouteList& out) const {
  out.ids.clear();
  out.hops.clear();
  out.costs.clear();
  out.hopCounts.clear();
  // hop counts: depth in the shortest-path tree, memoised along parent chains
  constexpr uint32_t kUnknown = 0xFFFFFFFFu;
  depth_.assign(count_, kUnknown);
  if (count_) depth_[0] = 0;
  std::vector<uint32_t> chain;
  for (uint32_t x = 1; x < count_; ++x) {
    if (!present_[x] || dist_[x] == kInf) continue;
    uint32_t y = x;
    while (depth_[y] == kUnknown) {
      chain.push_back(y);
      y = static_cast<uint32_t>(parent_[y]);
    }
    uint32_t d = depth_[y];
    while (!chain.empty()) {
      depth_[chain.back()] = ++d;
      chain.pop_back();
    }
    out.ids.insert(out.ids.end(), key(int32_t(x)), key(int32_t(x)) + kIdBytes);
    out.hops.push_back(hop_[x]);
    out.costs.push_back(static_cast<double>(dist_[x]));
    out.hopCounts.push_back(depth_[x]);
  }
}

}  // namespace pnet
