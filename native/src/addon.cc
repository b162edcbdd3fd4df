// Node-API bindings of the pnet routing table: plain functions taking the table handle (an
// External) as first argument, ids as bytes. Hot paths use the C API directly (no per-call
// wrappers); the rest goes through node-addon-api. Errors are thrown as TypeError/RangeError.
#include <napi.h>

#include <cstring>
#include <memory>
#include <vector>

#include "table.h"

namespace {

using pnet::kIdBytes;
using pnet::RoutingTable;

constexpr uint32_t kMagic = 0x706e6574;  // "pnet"

struct Holder {
  uint32_t magic = kMagic;
  RoutingTable table;
  explicit Holder(const uint8_t* id) : table(id) {}
};

void finalizeHolder(napi_env, void* data, void*) {
  Holder* h = static_cast<Holder*>(data);
  h->magic = 0;
  delete h;
}

// ---- C-API helpers (return false after throwing) ------------------------------------------------

bool throwType(napi_env env, const char* message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return false;
}

bool getTable(napi_env env, napi_value v, RoutingTable** out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return throwType(env, "expected a routing table handle");
  void* data = nullptr;
  if (napi_get_value_external(env, v, &data) != napi_ok || !data) return throwType(env, "expected a routing table handle");
  Holder* h = static_cast<Holder*>(data);
  if (h->magic != kMagic) return throwType(env, "expected a routing table handle");
  *out = &h->table;
  return true;
}

bool getBytes(napi_env env, napi_value v, const uint8_t** data, size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return throwType(env, "expected a Uint8Array/Buffer");
  napi_typedarray_type type;
  void* p = nullptr;
  if (napi_get_typedarray_info(env, v, &type, length, &p, nullptr, nullptr) != napi_ok ||
      (type != napi_uint8_array && type != napi_uint8_clamped_array))
    return throwType(env, "expected a Uint8Array/Buffer");
  *data = static_cast<const uint8_t*>(p);
  return true;
}

bool getId(napi_env env, napi_value v, const uint8_t** id) {
  size_t n = 0;
  if (!getBytes(env, v, id, &n)) return false;
  if (n != kIdBytes) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "a node id is 32 bytes");
    return false;
  }
  return true;
}

bool getPacked(napi_env env, napi_value v, const uint8_t** ids, size_t* count) {
  size_t n = 0;
  if (!getBytes(env, v, ids, &n)) return false;
  if (n % kIdBytes) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "packed ids: length must be a multiple of 32");
    return false;
  }
  *count = n / kIdBytes;
  return true;
}

template <typename T>
bool getTyped(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* length, const char* what) {
  bool is = false;
  napi_typedarray_type type;
  void* p = nullptr;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, length, &p, nullptr, nullptr) != napi_ok || type != want)
    return throwType(env, what);
  *data = static_cast<T*>(p);
  return true;
}

inline void sync(RoutingTable* t) {
  if (t->dirty()) t->flush();
}

// ---- hot paths (C API) ---------------------------------------------------------------------------

// nextHop(table, id) -> handle of the next hop, the local node's handle (0) for itself, -1 no route
napi_value NextHop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  RoutingTable* t;
  const uint8_t* id;
  if (argc < 2 || !getTable(env, argv[0], &t) || !getId(env, argv[1], &id)) return nullptr;
  sync(t);
  napi_value r;
  napi_create_int32(env, t->nextHop(id), &r);
  return r;
}

// nextHopBatch(table, packedIds, out: Int32Array) -> undefined; out[i] as nextHop
napi_value NextHopBatch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  RoutingTable* t;
  const uint8_t* ids;
  size_t n = 0, outLen = 0;
  int32_t* out;
  if (argc < 3 || !getTable(env, argv[0], &t) || !getPacked(env, argv[1], &ids, &n) ||
      !getTyped(env, argv[2], napi_int32_array, &out, &outLen, "out: expected an Int32Array"))
    return nullptr;
  if (outLen < n) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "out is shorter than the number of ids");
    return nullptr;
  }
  sync(t);
  t->nextHopBatch(ids, n, out);
  return nullptr;
}

// handleOf(table, id) -> handle or -1 (no recompute)
napi_value HandleOf(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  RoutingTable* t;
  const uint8_t* id;
  if (argc < 2 || !getTable(env, argv[0], &t) || !getId(env, argv[1], &id)) return nullptr;
  napi_value r;
  napi_create_int32(env, t->handleOf(id), &r);
  return r;
}

// ---- the rest (node-addon-api) --------------------------------------------------------------------

RoutingTable* tableArg(const Napi::CallbackInfo& info) {
  RoutingTable* t = nullptr;
  if (info.Length() < 1 || !getTable(info.Env(), info[0], &t)) return nullptr;
  return t;
}

const uint8_t* idArg(const Napi::CallbackInfo& info, size_t i) {
  const uint8_t* id = nullptr;
  if (info.Length() <= i) {
    throwType(info.Env(), "missing node id");
    return nullptr;
  }
  if (!getId(info.Env(), info[i], &id)) return nullptr;
  return id;
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* id = idArg(info, 0);
  if (!id) return env.Undefined();
  Holder* h = new Holder(id);
  napi_value ext;
  if (napi_create_external(env, h, finalizeHolder, nullptr, &ext) != napi_ok) {
    delete h;
    return env.Undefined();
  }
  return Napi::Value(env, ext);
}

// setLinks(table, id, packedTargets, costs: Uint32Array) -> changed
Napi::Value SetLinks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* id = idArg(info, 1);
  if (!id) return env.Undefined();
  const uint8_t* targets;
  size_t k = 0, nc = 0;
  uint32_t* costs;
  if (info.Length() < 4 || !getPacked(env, info[2], &targets, &k) ||
      !getTyped(env, info[3], napi_uint32_array, &costs, &nc, "costs: expected a Uint32Array"))
    return env.Undefined();
  if (nc != k) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "one cost per target");
    return env.Undefined();
  }
  for (size_t i = 0; i < k; ++i) {
    if (costs[i] < 1 || costs[i] > pnet::kMaxCost) {
      napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "a cost is an integer in [1, 16777215]");
      return env.Undefined();
    }
  }
  if (!t->room(k + 1)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "routing table full: at most 16777214 nodes");
    return env.Undefined();
  }
  return Napi::Boolean::New(env, t->setLinks(id, targets, costs, k));
}

Napi::Value RemoveNode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* id = idArg(info, 1);
  if (!id) return env.Undefined();
  return Napi::Boolean::New(env, t->removeNode(id));
}

// recompute(table, full?: boolean) -> [mode, changed, freed]; mode 0 none, 1 incremental, 2 full
Napi::Value Recompute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const bool full = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  const pnet::FlushResult r = full ? t->forceFull() : t->flush();
  Napi::Array a = Napi::Array::New(env, 3);
  a.Set(uint32_t(0), Napi::Number::New(env, static_cast<int>(r.mode)));
  a.Set(uint32_t(1), Napi::Number::New(env, r.changed));
  a.Set(uint32_t(2), Napi::Number::New(env, r.freed));
  return a;
}

// groupByNextHop(table, packedIds, indexes: Uint32Array(n), outIds: Uint8Array(n*32))
//   -> Int32Array [hop0, end0, hop1, end1, ...]
Napi::Value GroupByNextHop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* ids;
  size_t n = 0, ni = 0, no = 0;
  uint32_t* indexes;
  const uint8_t* outIds;
  if (info.Length() < 4 || !getPacked(env, info[1], &ids, &n) ||
      !getTyped(env, info[2], napi_uint32_array, &indexes, &ni, "indexes: expected a Uint32Array") ||
      !getBytes(env, info[3], &outIds, &no))
    return env.Undefined();
  if (ni < n || no < n * kIdBytes) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "output arrays too short");
    return env.Undefined();
  }
  if (outIds < ids + n * kIdBytes && ids < outIds + n * kIdBytes) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "outIds overlaps the input");
    return env.Undefined();
  }
  sync(t);
  std::vector<int32_t> groups = t->groupByNextHop(ids, n, indexes, const_cast<uint8_t*>(outIds));
  Napi::Int32Array r = Napi::Int32Array::New(env, groups.size());
  if (!groups.empty()) std::memcpy(r.Data(), groups.data(), groups.size() * sizeof(int32_t));
  return r;
}

Napi::Value Distance(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* id = idArg(info, 1);
  if (!id) return env.Undefined();
  sync(t);
  return Napi::Number::New(env, static_cast<double>(t->distance(id)));
}

// path(table, id) -> packed ids from the local node to id, or null
Napi::Value Path(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* id = idArg(info, 1);
  if (!id) return env.Undefined();
  sync(t);
  std::vector<int32_t> p;
  if (!t->path(id, p)) return env.Null();
  Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, p.size() * kIdBytes);
  for (size_t i = 0; i < p.size(); ++i) std::memcpy(b.Data() + i * kIdBytes, t->key(p[i]), kIdBytes);
  return b;
}

Napi::Value RouteListValue(Napi::Env env, const pnet::RouteList& l) {
  Napi::Buffer<uint8_t> ids = Napi::Buffer<uint8_t>::Copy(env, l.ids.data(), l.ids.size());
  Napi::Int32Array hops = Napi::Int32Array::New(env, l.hops.size());
  if (!l.hops.empty()) std::memcpy(hops.Data(), l.hops.data(), l.hops.size() * sizeof(int32_t));
  Napi::Float64Array costs = Napi::Float64Array::New(env, l.costs.size());
  if (!l.costs.empty()) std::memcpy(costs.Data(), l.costs.data(), l.costs.size() * sizeof(double));
  Napi::Uint32Array hopCounts = Napi::Uint32Array::New(env, l.hops.size());
  if (l.hopCounts.size() == l.hops.size() && !l.hops.empty())
    std::memcpy(hopCounts.Data(), l.hopCounts.data(), l.hopCounts.size() * sizeof(uint32_t));
  else if (!l.hops.empty())
    std::memset(hopCounts.Data(), 0, l.hops.size() * sizeof(uint32_t));
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(uint32_t(0), ids);
  a.Set(uint32_t(1), hops);
  a.Set(uint32_t(2), costs);
  a.Set(uint32_t(3), hopCounts);
  return a;
}

// routes(table) -> [packed destinations, Int32Array next-hop handles, Float64Array costs, Uint32Array hop counts]
Napi::Value Routes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  sync(t);
  pnet::RouteList l;
  t->routes(l);
  return RouteListValue(env, l);
}

// changes(table) -> the routes changed by the last recompute, same shape (hop -1, cost -1: lost)
Napi::Value Changes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  return RouteListValue(env, t->lastChanges());
}

// idOf(table, handle) -> Buffer (copy) or null
Napi::Value IdOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    throwType(env, "expected a handle");
    return env.Undefined();
  }
  const double h = info[1].As<Napi::Number>().DoubleValue();
  if (!(h >= 0) || h != static_cast<double>(static_cast<int64_t>(h)) || !t->validHandle(static_cast<int64_t>(h)))
    return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, t->key(static_cast<int32_t>(h)), kIdBytes);
}

// links(table, id) -> [packed targets, Uint32Array costs] sorted by target id bytes, or null
Napi::Value Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  const uint8_t* id = idArg(info, 1);
  if (!id) return env.Undefined();
  std::vector<uint8_t> targets;
  std::vector<uint32_t> costs;
  if (!t->links(id, targets, costs)) return env.Null();
  Napi::Uint32Array c = Napi::Uint32Array::New(env, costs.size());
  if (!costs.empty()) std::memcpy(c.Data(), costs.data(), costs.size() * sizeof(uint32_t));
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t(0), Napi::Buffer<uint8_t>::Copy(env, targets.data(), targets.size()));
  a.Set(uint32_t(1), c);
  return a;
}

// size(table) -> [known nodes, edges]
Napi::Value Size(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RoutingTable* t = tableArg(info);
  if (!t) return env.Undefined();
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t(0), Napi::Number::New(env, t->size()));
  a.Set(uint32_t(1), Napi::Number::New(env, static_cast<double>(t->edgeCount())));
  return a;
}

void addRaw(Napi::Env env, Napi::Object exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  exports.Set(name, Napi::Value(env, fn));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  addRaw(env, exports, "nextHop", NextHop);
  addRaw(env, exports, "nextHopBatch", NextHopBatch);
  addRaw(env, exports, "handleOf", HandleOf);
  exports.Set("create", Napi::Function::New(env, Create, "create"));
  exports.Set("setLinks", Napi::Function::New(env, SetLinks, "setLinks"));
  exports.Set("removeNode", Napi::Function::New(env, RemoveNode, "removeNode"));
  exports.Set("recompute", Napi::Function::New(env, Recompute, "recompute"));
  exports.Set("groupByNextHop", Napi::Function::New(env, GroupByNextHop, "groupByNextHop"));
  exports.Set("distance", Napi::Function::New(env, Distance, "distance"));
  exports.Set("path", Napi::Function::New(env, Path, "path"));
  exports.Set("routes", Napi::Function::New(env, Routes, "routes"));
  exports.Set("changes", Napi::Function::New(env, Changes, "changes"));
  exports.Set("idOf", Napi::Function::New(env, IdOf, "idOf"));
  exports.Set("links", Napi::Function::New(env, Links, "links"));
  exports.Set("size", Napi::Function::New(env, Size, "size"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(pnet_routing, Init)
