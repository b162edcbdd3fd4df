// The routing benchmark's reference (bench/routing-table.mjs), never part of an install: a
// textbook binary-heap Dijkstra (std::priority_queue) over a graph in CSR form, so the table's
// radix-heap shortest paths are measured against plain C++ on the same graph, not against JS.
//   dijkstra(offsets: Uint32Array(n + 1), targets: Uint32Array, costs: Uint32Array, source) -> sum
// of the distances from source to every node it reaches (exact below 2^53).
#include <napi.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <utility>
#include <vector>

namespace {

bool isUint32Array(const Napi::Value& v) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array;
}

Napi::Value Dijkstra(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !isUint32Array(info[0]) || !isUint32Array(info[1]) || !isUint32Array(info[2]) || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "dijkstra(offsets: Uint32Array, targets: Uint32Array, costs: Uint32Array, source: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Napi::Uint32Array offsets = info[0].As<Napi::Uint32Array>();
  const Napi::Uint32Array targets = info[1].As<Napi::Uint32Array>();
  const Napi::Uint32Array costs = info[2].As<Napi::Uint32Array>();
  const size_t n = offsets.ElementLength() == 0 ? 0 : offsets.ElementLength() - 1;
  const uint32_t source = info[3].As<Napi::Number>().Uint32Value();
  const size_t m = targets.ElementLength();
  bool ok = source < n && costs.ElementLength() == m && offsets[n] == m;
  for (size_t i = 0; ok && i < n; i++) ok = offsets[i] <= offsets[i + 1];
  for (size_t e = 0; ok && e < m; e++) ok = targets[e] < n;
  if (!ok) {
    Napi::RangeError::New(env, "dijkstra: offsets, targets and costs do not describe a graph that holds source").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  constexpr uint64_t kInf = std::numeric_limits<uint64_t>::max();
  std::vector<uint64_t> dist(n, kInf);
  using Item = std::pair<uint64_t, uint32_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
  dist[source] = 0;
  queue.push({0, source});
  while (!queue.empty()) {
    const Item top = queue.top();
    queue.pop();
    if (top.first != dist[top.second]) continue;
    for (uint32_t e = offsets[top.second]; e < offsets[top.second + 1]; e++) {
      const uint64_t d = top.first + costs[e];
      if (d < dist[targets[e]]) {
        dist[targets[e]] = d;
        queue.push({d, targets[e]});
      }
    }
  }
  uint64_t sum = 0;
  for (uint64_t d : dist)
    if (d != kInf) sum += d;
  return Napi::Number::New(env, static_cast<double>(sum));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("dijkstra", Napi::Function::New(env, Dijkstra, "dijkstra"));
  return exports;
}

}  // namespace

NODE_API_MODULE(pnet_bench_dijkstra, Init)
