// glibc malloc's holdings, for the QUIC transport's trimmer (src/transport/quic/malloc-trim.ts):
//   mallocTrim(): malloc_trim(0), which gives free pages of every arena back to the kernel; true when
//     some were released. Churned connections (quiche, TLS) leave freed memory glibc keeps otherwise.
//   mallocInfo(): mallinfo2's totals over all arenas, in bytes: { arena, uordblks, fordblks, hblkhd,
//     keepcost } (in use = uordblks; free but held = fordblks), for the soak's samples.
//   mallocPinMmapThreshold(bytes): mallopt(M_MMAP_THRESHOLD, bytes), which also turns off glibc's
//     dynamic threshold: a freed mmapped chunk (a closed socket's 1 MiB receive slab) would raise the
//     threshold to its size, and later chunks that size would live in the heap, where a trim cannot
//     give back what small live chunks pin around them. true when set.
//   mallocArenas(): malloc_info's XML (every arena: its size and free chunks), for telling the main
//     thread's allocations from other threads' (the soak's samples).
// Both are null where the C library is not glibc.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#include <cstdio>
#include <cstdlib>
#endif

namespace {

#if defined(__GLIBC__)
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

Napi::Value MallocInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
  struct mallinfo2 m = mallinfo2();
#else
  struct mallinfo m = mallinfo();  // int fields: wrong past 2 GiB, enough for a sample
#endif
  o.Set("arena", Napi::Number::New(env, static_cast<double>(m.arena)));
  o.Set("uordblks", Napi::Number::New(env, static_cast<double>(m.uordblks)));
  o.Set("fordblks", Napi::Number::New(env, static_cast<double>(m.fordblks)));
  o.Set("hblkhd", Napi::Number::New(env, static_cast<double>(m.hblkhd)));
  o.Set("keepcost", Napi::Number::New(env, static_cast<double>(m.keepcost)));
  return o;
}

Napi::Value MallocPinMmapThreshold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "mallocPinMmapThreshold(bytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, mallopt(M_MMAP_THRESHOLD, info[0].As<Napi::Number>().Int32Value()) == 1);
}

Napi::Value MallocArenas(const Napi::CallbackInfo& info) {
  char* text = nullptr;
  size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  if (stream == nullptr) return info.Env().Null();
  malloc_info(0, stream);
  fclose(stream);
  Napi::String xml = Napi::String::New(info.Env(), text, length);
  free(text);
  return xml;
}
#endif

}  // namespace

// Called by both of udp.cc's Init (the batching socket and the stub).
void DefineMallocFunctions(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("mallocInfo", Napi::Function::New(env, MallocInfo, "mallocInfo"));
  exports.Set("mallocArenas", Napi::Function::New(env, MallocArenas, "mallocArenas"));
  exports.Set("mallocPinMmapThreshold", Napi::Function::New(env, MallocPinMmapThreshold, "mallocPinMmapThreshold"));
#else
  exports.Set("mallocTrim", env.Null());
  exports.Set("mallocInfo", env.Null());
  exports.Set("mallocArenas", env.Null());
  exports.Set("mallocPinMmapThreshold", env.Null());
#endif
}
