// pnet's UDP socket for the QUIC transport (Linux): many datagrams per system call.
// Sends go out as one UDP GSO super-datagram per run of equal-sized packets (sendmmsg where the
// kernel refuses GSO); receives come in by recvmmsg with UDP GRO, so one wake-up and one call into
// JavaScript carry up to kSlots x 64 KiB. The socket is polled on Node's own libuv loop.
// Node's dgram makes one system call and one JavaScript round per datagram: at 1350-byte
// datagrams on loopback that was about half of the transport's CPU time.
#include <napi.h>

// execve and glibcVersion, for `pnet node`'s start (reexec.cc).
void DefineProcessFunctions(Napi::Env env, Napi::Object exports);
// mallocTrim and mallocInfo, for the QUIC transport's trimmer and the soak (malloc.cc).
void DefineMallocFunctions(Napi::Env env, Napi::Object exports);

#if defined(__linux__) && defined(PNET_HAVE_UV)
#include <uv.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace {

constexpr int kSlots = 16;               // datagrams per recvmmsg
constexpr size_t kSlotSize = 65536;      // room for one GRO super-datagram
constexpr int kRoundsPerWake = 8;        // recvmmsg calls before yielding to the event loop
constexpr size_t kMaxSegments = 64;      // UDP_MAX_SEGMENTS on older kernels
constexpr size_t kMaxGsoBytes = 65000;   // below the IPv4 UDP payload limit (65507)
constexpr size_t kMaxQueuedBytes = 8u << 20;  // sends waiting for a full socket buffer

Napi::Error errnoError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + uv_strerror(-err));
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  return e;
}

struct Pending {
  std::vector<uint8_t> data;
  sockaddr_storage to;
  socklen_t toLength;
  uint16_t segment;
};

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {InstanceMethod<&UdpSocket::Bind>("bind"), InstanceMethod<&UdpSocket::Send>("send"),
                        InstanceMethod<&UdpSocket::Close>("close"), InstanceMethod<&UdpSocket::Info>("info")});
  }

  // new UdpSocket(onBatch(count)): received datagrams are described in .meta / .hosts and stored in .buffer
  explicit UdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSocket>(info), context_(info.Env(), "pnet:udp") {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "UdpSocket(onBatch): onBatch must be a function").ThrowAsJavaScriptException();
      return;
    }
    onBatch_ = Napi::Persistent(info[0].As<Napi::Function>());
    Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::New(env, kSlots * kSlotSize);
    slab_ = buffer.Data();
    slabRef_ = Napi::Persistent(buffer);
    Napi::Int32Array meta = Napi::Int32Array::New(env, kSlots * 4);
    meta_ = meta.Data();
    metaRef_ = Napi::Persistent(meta);
    Napi::Array hosts = Napi::Array::New(env, kSlots + 1);
    hosts_ = Napi::Persistent(hosts);
    info.This().As<Napi::Object>().Set("buffer", buffer);
    info.This().As<Napi::Object>().Set("meta", meta);
    info.This().As<Napi::Object>().Set("hosts", hosts);
  }

  // Bound sockets are referenced until close(): finalised ones were never bound or are closed.
  ~UdpSocket() override {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  // bind(host, port, bufferSize) -> bound port
  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ >= 0 || closed_) {
      Napi::Error::New(env, "socket already bound or closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "bind(host, port, bufferSize)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::string host = info[0].As<Napi::String>().Utf8Value();
    int port = info[1].As<Napi::Number>().Int32Value();
    int bufferSize = info[2].As<Napi::Number>().Int32Value();
    sockaddr_storage address;
    socklen_t length;
    if (!parse(host, port, false, &address, &length)) {
      Napi::TypeError::New(env, "not an IP address: " + host).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    family_ = address.ss_family;
    int fd = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      errnoError(env, errno, "socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufferSize, sizeof bufferSize);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufferSize, sizeof bufferSize);
    int one = 1;
    gro_ = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    int segment = 0;
    socklen_t segmentLength = sizeof segment;
    gso_ = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &segment, &segmentLength) == 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
      int err = errno;
      ::close(fd);
      errnoError(env, err, "bind " + host + ":" + std::to_string(port)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    int err = uv_poll_init(loop, poll_, fd);
    if (err == 0) err = uv_poll_start(poll_, UV_READABLE, onPoll);
    if (err != 0) {
      delete poll_;
      poll_ = nullptr;
      ::close(fd);
      errnoError(env, -err, "poll").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    fd_ = fd;
    Ref();  // the poll handle points at us until close()
    int bound = ntohs(family_ == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
    return Napi::Number::New(env, bound);
  }

  // send(bytes, offset, length, segmentSize, port, host) -> 0, or a negative errno when dropped.
  // bytes[offset, offset+length) is a run of segmentSize-byte datagrams, the last one possibly shorter.
  // The bytes are copied or sent before it returns: the caller may reuse them at once.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber()) {
      Napi::TypeError::New(env, "send(bytes, offset, length, segmentSize, port, host)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    size_t offset = info[1].As<Napi::Number>().Uint32Value();
    size_t length = info[2].As<Napi::Number>().Uint32Value();
    size_t segment = info[3].As<Napi::Number>().Uint32Value();
    int port = info[4].As<Napi::Number>().Int32Value();
    if (offset + length > bytes.ByteLength() || segment == 0 || segment > 65507 || length == 0) {
      Napi::RangeError::New(env, "send: bad offset, length or segment size").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!destination(info[5], port)) {
      Napi::TypeError::New(env, "send: host must be an IP address").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const uint8_t* data = bytes.Data() + offset;
    if (!queue_.empty()) return Napi::Number::New(env, enqueue(data, length, segment));
    size_t sent = 0;
    int err = transmitTo(data, length, segment, reinterpret_cast<const sockaddr*>(&to_), toLength_, &sent);
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) return Napi::Number::New(env, enqueue(data + sent, length - sent, segment));
    if (err != 0) {
      droppedSends_++;
      return Napi::Number::New(env, -err);
    }
    return Napi::Number::New(env, 0);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    shut();
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("gso", Napi::Boolean::New(env, gso_));
    o.Set("gro", Napi::Boolean::New(env, gro_));
    o.Set("queuedBytes", Napi::Number::New(env, static_cast<double>(queued_)));
    o.Set("droppedSends", Napi::Number::New(env, static_cast<double>(droppedSends_)));
    return o;
  }

  static bool parse(const std::string& host, int port, bool v6Socket, sockaddr_storage* out, socklen_t* length) {
    std::memset(out, 0, sizeof *out);
    if (port < 0 || port > 65535) return false;
    auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
    auto* v4 = reinterpret_cast<sockaddr_in*>(out);
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(port));
      *length = sizeof(sockaddr_in6);
      return true;
    }
    in_addr a;
    if (inet_pton(AF_INET, host.c_str(), &a) != 1) return false;
    if (v6Socket) {  // an IPv4 peer of a dual-stack socket: ::ffff:a.b.c.d
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(static_cast<uint16_t>(port));
      v6->sin6_addr.s6_addr[10] = 0xff;
      v6->sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&v6->sin6_addr.s6_addr[12], &a, 4);
      *length = sizeof(sockaddr_in6);
      return true;
    }
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    v4->sin_addr = a;
    *length = sizeof(sockaddr_in);
    return true;
  }

  // Sets to_/toLength_ for (host, port); consecutive sends mostly go to the same peer.
  bool destination(Napi::Value hostValue, int port) {
    if (!hostValue.IsString()) return false;
    std::string host = hostValue.As<Napi::String>().Utf8Value();
    if (port == toPort_ && host == toHost_) return true;
    if (!parse(host, port, family_ == AF_INET6, &to_, &toLength_)) return false;
    toHost_ = std::move(host);
    toPort_ = port;
    return true;
  }

  // Sends a run to `to`; returns 0 or an errno; *sent counts the bytes that left before an error.
  int transmitTo(const uint8_t* data, size_t length, size_t segment, const sockaddr* to, socklen_t toLength, size_t* sent) {
    size_t perCall = std::min(kMaxSegments, std::max<size_t>(1, kMaxGsoBytes / segment)) * segment;
    while (*sent < length) {
      size_t chunk = std::min(length - *sent, perCall);
      const uint8_t* p = data + *sent;
      if (chunk <= segment || !gso_) {
        int err = chunk <= segment ? sendOne(p, chunk, to, toLength) : sendMany(p, chunk, segment, to, toLength, sent);
        if (err != 0) return err;
        if (chunk <= segment) *sent += chunk;
        continue;
      }
      iovec iov{const_cast<uint8_t*>(p), chunk};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))] = {};
      msghdr m{};
      m.msg_name = const_cast<sockaddr*>(to);
      m.msg_namelen = toLength;
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = control;
      m.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t size = static_cast<uint16_t>(segment);
      std::memcpy(CMSG_DATA(c), &size, sizeof size);
      ssize_t n;
      do n = sendmsg(fd_, &m, 0);
      while (n < 0 && errno == EINTR);
      if (n < 0) {
        int err = errno;
        // EIO: the route's device cannot segment (no checksum offload); EINVAL/ENOPROTOOPT: no GSO here.
        if (err == EIO || err == EINVAL || err == ENOPROTOOPT) {
          gso_ = false;
          continue;
        }
        return err;
      }
      *sent += chunk;
    }
    return 0;
  }

  int sendOne(const uint8_t* p, size_t length, const sockaddr* to, socklen_t toLength) {
    ssize_t n;
    do n = sendto(fd_, p, length, 0, to, toLength);
    while (n < 0 && errno == EINTR);
    return n < 0 ? errno : 0;
  }

  int sendMany(const uint8_t* p, size_t length, size_t segment, const sockaddr* to, socklen_t toLength, size_t* sent) {
    mmsghdr msgs[kMaxSegments];
    iovec iovs[kMaxSegments];
    size_t count = 0;
    for (size_t at = 0; at < length; at += segment, count++) {
      iovs[count] = {const_cast<uint8_t*>(p + at), std::min(segment, length - at)};
      msgs[count] = {};
      msgs[count].msg_hdr.msg_name = const_cast<sockaddr*>(to);
      msgs[count].msg_hdr.msg_namelen = toLength;
      msgs[count].msg_hdr.msg_iov = &iovs[count];
      msgs[count].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < count) {
      int n = sendmmsg(fd_, msgs + done, static_cast<unsigned>(count - done), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      for (int i = 0; i < n; i++) *sent += iovs[done + i].iov_len;
      done += static_cast<size_t>(n);
    }
    return 0;
  }

  // Keeps a copy for when the socket is writable again; drops (and counts) past kMaxQueuedBytes.
  int enqueue(const uint8_t* data, size_t length, size_t segment) {
    if (queued_ + length > kMaxQueuedBytes) {
      droppedSends_++;
      return -ENOBUFS;
    }
    Pending pending{std::vector<uint8_t>(data, data + length), to_, toLength_, static_cast<uint16_t>(segment)};
    queue_.push_back(std::move(pending));
    queued_ += length;
    if (queue_.size() == 1) uv_poll_start(poll_, UV_READABLE | UV_WRITABLE, onPoll);
    return 0;
  }

  void drainQueue() {
    while (!queue_.empty()) {
      Pending& p = queue_.front();
      size_t sent = 0;
      int err = transmitTo(p.data.data(), p.data.size(), p.segment, reinterpret_cast<const sockaddr*>(&p.to), p.toLength, &sent);
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
        queued_ -= sent;
        p.data.erase(p.data.begin(), p.data.begin() + static_cast<std::ptrdiff_t>(sent));
        return;
      }
      if (err != 0) droppedSends_++;
      queued_ -= p.data.size();
      queue_.pop_front();
    }
    uv_poll_start(poll_, UV_READABLE, onPoll);
  }

  static void onPoll(uv_poll_t* handle, int status, int events) {
    UdpSocket* self = static_cast<UdpSocket*>(handle->data);
    if (self == nullptr || self->fd_ < 0) return;
    if (status < 0) events = UV_READABLE;  // let recvmmsg report (and clear) the socket error
    if (events & UV_WRITABLE) self->drainQueue();
    if (events & UV_READABLE) self->receive();
  }

  void receive() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array hosts = hosts_.Value();
    mmsghdr msgs[kSlots];
    iovec iovs[kSlots];
    sockaddr_storage from[kSlots];
    alignas(cmsghdr) char control[kSlots][CMSG_SPACE(sizeof(int))];
    for (int round = 0; round < kRoundsPerWake && fd_ >= 0; round++) {
      for (int i = 0; i < kSlots; i++) {
        iovs[i] = {slab_ + i * kSlotSize, kSlotSize};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control[i];
        msgs[i].msg_hdr.msg_controllen = sizeof control[i];
      }
      int n = recvmmsg(fd_, msgs, kSlots, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN, or a reported ICMP error: nothing to read now
      }
      int count = 0;
      for (int i = 0; i < n; i++) {
        const msghdr& h = msgs[i].msg_hdr;
        if (h.msg_flags & MSG_TRUNC) continue;
        int segment = static_cast<int>(msgs[i].msg_len);
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) std::memcpy(&segment, CMSG_DATA(c), sizeof segment);
        }
        int port = 0;
        meta_[count * 4] = static_cast<int32_t>(i * kSlotSize);
        meta_[count * 4 + 1] = static_cast<int32_t>(msgs[i].msg_len);
        meta_[count * 4 + 2] = segment > 0 ? segment : static_cast<int32_t>(msgs[i].msg_len);
        hosts.Set(static_cast<uint32_t>(count), hostOf(env, hosts, from[i], &port));
        meta_[count * 4 + 3] = port;
        count++;
      }
      if (count > 0) {
        onBatch_.MakeCallback(Value(), {Napi::Number::New(env, count)}, context_);
        if (env.IsExceptionPending()) {
          Napi::Error error = env.GetAndClearPendingException();
          napi_fatal_exception(env, error.Value());
          return;
        }
      }
      if (n < kSlots) return;
    }
  }

  // The sender's address as text, reusing the last string while the sending host stays the same.
  Napi::Value hostOf(Napi::Env env, Napi::Array hosts, const sockaddr_storage& from, int* port) {
    const void* address;
    size_t size;
    if (from.ss_family == AF_INET6) {
      const auto& v6 = reinterpret_cast<const sockaddr_in6&>(from);
      *port = ntohs(v6.sin6_port);
      address = &v6.sin6_addr;
      size = 16;
    } else {
      const auto& v4 = reinterpret_cast<const sockaddr_in&>(from);
      *port = ntohs(v4.sin_port);
      address = &v4.sin_addr;
      size = 4;
    }
    // Strings cannot be held by napi references (before Node-API 10): the last one lives in hosts[kSlots].
    if (size == lastAddressSize_ && std::memcmp(address, lastAddress_, size) == 0) return hosts.Get(kSlots);
    char text[INET6_ADDRSTRLEN] = "";
    inet_ntop(from.ss_family, address, text, sizeof text);
    Napi::String host = Napi::String::New(env, text);
    std::memcpy(lastAddress_, address, size);
    lastAddressSize_ = size;
    hosts.Set(kSlots, host);
    return host;
  }

  void shut() {
    if (closed_) return;
    closed_ = true;
    if (poll_ != nullptr) {
      poll_->data = nullptr;
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      queue_.clear();
      queued_ = 0;
      Unref();
    }
  }

  int fd_ = -1;
  int family_ = AF_INET;
  bool closed_ = false;
  bool gso_ = false;
  bool gro_ = false;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext context_;
  Napi::FunctionReference onBatch_;
  uint8_t* slab_ = nullptr;  // .buffer: the received datagrams
  int32_t* meta_ = nullptr;  // .meta: [offset, length, segmentSize, port] per received datagram
  Napi::Reference<Napi::Buffer<uint8_t>> slabRef_;
  Napi::Reference<Napi::Int32Array> metaRef_;
  Napi::Reference<Napi::Array> hosts_;
  std::deque<Pending> queue_;
  size_t queued_ = 0;
  double droppedSends_ = 0;
  std::string toHost_;
  int toPort_ = -1;
  sockaddr_storage to_{};
  socklen_t toLength_ = 0;
  uint8_t lastAddress_[16] = {};
  size_t lastAddressSize_ = 0;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpSocket", UdpSocket::Define(env));
  exports.Set("supported", Napi::Boolean::New(env, true));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  DefineProcessFunctions(env, exports);
  DefineMallocFunctions(env, exports);
  return exports;
}

}  // namespace

#else  // not Linux, or built without libuv's header: pnet uses node:dgram

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", Napi::Boolean::New(env, false));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  DefineProcessFunctions(env, exports);
  DefineMallocFunctions(env, exports);
  return exports;
}
}  // namespace

#endif

NODE_API_MODULE(pnet_udp, Init)
