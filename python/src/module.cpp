// _broach: the C++ core as a Python extension module (pybind11).
//
// Values cross as MessagePack, converted here straight between Python
// objects and msgpack (None, bool, int, float, str, bytes, list/tuple, dict),
// so a Python node and a C++ node speak the same bytes. The Python packages
// (broach, BroachRpc, threadPool) are thin layers over this module.
//
// Threads and the GIL: every blocking call into the core (constructing a
// node, a call, stop) releases the GIL. A Python handler runs on the node's
// worker pool and takes the GIL only while Python code runs; the loop thread
// never takes it. Python objects owned by C++ (handlers, callbacks) are
// released with the GIL held, and leaked instead once the interpreter is
// finalizing (a thread must not take the GIL then).
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <msgpack.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <deque>
#include <mutex>
#include <cstring>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>

#include "broach/config.hpp"
#include "broach/error.hpp"
#include "broach/node.hpp"
#include "exec/thread_pool.hpp"

namespace py = pybind11;

namespace broach::python {
namespace {

// msgpack ext type marking keyword arguments: the last element of an
// argument array, holding a packed map (docs/usage.md, "Python").
constexpr std::int8_t kKwargsExt = 1;
constexpr int kMaxDepth = 64;

using Packer = msgpack::packer<msgpack::sbuffer>;

void pack_py(Packer& pk, py::handle o, int depth) {
  if (depth > kMaxDepth) throw py::value_error("value nested more than 64 deep");
  if (o.is_none()) {
    pk.pack_nil();
  } else if (PyBool_Check(o.ptr())) {
    if (o.ptr() == Py_True) pk.pack_true(); else pk.pack_false();
  } else if (PyLong_Check(o.ptr())) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
    if (overflow == 0) {
      pk.pack(static_cast<std::int64_t>(v));
    } else {
      const unsigned long long u = PyLong_AsUnsignedLongLong(o.ptr());
      if (PyErr_Occurred()) {
        PyErr_Clear();
        throw std::overflow_error("int does not fit 64 bits");
      }
      pk.pack(static_cast<std::uint64_t>(u));
    }
  } else if (PyFloat_Check(o.ptr())) {
    pk.pack(PyFloat_AS_DOUBLE(o.ptr()));
  } else if (PyUnicode_Check(o.ptr())) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
    if (s == nullptr) throw py::error_already_set();
    pk.pack_str(static_cast<std::uint32_t>(n));
    pk.pack_str_body(s, static_cast<std::uint32_t>(n));
  } else if (PyBytes_Check(o.ptr()) || PyByteArray_Check(o.ptr()) || PyMemoryView_Check(o.ptr())) {
    Py_buffer v;
    // PyBUF_SIMPLE: contiguous bytes only (a strided memoryview raises BufferError).
    if (PyObject_GetBuffer(o.ptr(), &v, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    const auto n = static_cast<std::uint32_t>(v.len);
    pk.pack_bin(n);
    pk.pack_bin_body(static_cast<const char*>(v.buf), n);
    PyBuffer_Release(&v);
  } else if (PyList_Check(o.ptr()) || PyTuple_Check(o.ptr())) {
    auto seq = py::reinterpret_borrow<py::sequence>(o);
    pk.pack_array(static_cast<std::uint32_t>(seq.size()));
    for (auto item : seq) pack_py(pk, item, depth + 1);
  } else if (PyDict_Check(o.ptr())) {
    auto d = py::reinterpret_borrow<py::dict>(o);
    pk.pack_map(static_cast<std::uint32_t>(d.size()));
    for (auto [k, v] : d) {
      pack_py(pk, k, depth + 1);
      pack_py(pk, v, depth + 1);
    }
  } else {
    throw py::type_error(std::string("cannot send a value of type ") + Py_TYPE(o.ptr())->tp_name +
                         " (None, bool, int, float, str, bytes, list, tuple and dict cross the wire)");
  }
}

Bytes to_bytes(const msgpack::sbuffer& b) {
  auto* p = reinterpret_cast<const std::byte*>(b.data());
  return Bytes(p, p + b.size());
}

py::object to_py(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return py::none();
    case msgpack::type::BOOLEAN: return py::bool_(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER: return py::int_(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return py::int_(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return py::float_(o.via.f64);
    case msgpack::type::STR: return py::str(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: return py::bytes(o.via.bin.ptr, o.via.bin.size);
    case msgpack::type::EXT: return py::bytes(o.via.ext.data(), o.via.ext.size);
    case msgpack::type::ARRAY: {
      py::list l(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) l[i] = to_py(o.via.array.ptr[i]);
      return l;
    }
    case msgpack::type::MAP: {
      py::dict d;
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        py::object k = to_py(o.via.map.ptr[i].key);
        if (PyList_Check(k.ptr())) k = py::tuple(k);  // a list is not hashable
        d[k] = to_py(o.via.map.ptr[i].val);
      }
      return d;
    }
  }
  return py::none();
}

/// msgpack from a peer: no container may claim more elements than there are
/// bytes, and nesting stops at kMaxDepth (to_py recurses once per level).
msgpack::object_handle unpack_limited(std::span<const std::byte> data) {
  const std::size_t n = data.size();
  return msgpack::unpack(reinterpret_cast<const char*>(data.data()), n, nullptr, nullptr,
                         msgpack::unpack_limit(n, n, n, n, n, kMaxDepth));
}

py::object unpack_py(std::span<const std::byte> data) {
  auto oh = unpack_limited(data);
  return to_py(oh.get());
}

/// Packs positional arguments (and keyword arguments, as a trailing ext).
Bytes pack_args(const py::tuple& args, const py::dict& kwargs) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_array(static_cast<std::uint32_t>(args.size() + (kwargs.empty() ? 0 : 1)));
  for (auto a : args) pack_py(pk, a, 0);
  if (!kwargs.empty()) {
    msgpack::sbuffer kb;
    Packer kpk(kb);
    pack_py(kpk, kwargs, 0);
    pk.pack_ext(static_cast<std::uint32_t>(kb.size()), kKwargsExt);
    pk.pack_ext_body(kb.data(), static_cast<std::uint32_t>(kb.size()));
  }
  return to_bytes(buf);
}

/// A Python object held by C++: released with the GIL, or leaked at exit.
std::shared_ptr<py::object> hold(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
    if (Py_IsInitialized() == 0 || _Py_IsFinalizing()) {
      p->release();  // no GIL to be had: leak the reference
      delete p;
      return;
    }
    py::gil_scoped_acquire gil;
    delete p;
  });
}

/// Keeps this thread's Python thread state alive between GIL
/// acquisitions, until the thread exits. Without it every acquisition from
/// a worker thread makes and deletes a thread state, and in 3.11 each new
/// thread state maps (and then unmaps) its frame stack: an munmap per call,
/// whose TLB shootdown across CPUs cost more than the call itself. Call with
/// the GIL held, only on a thread that had no Python thread state (a C++
/// thread): a Python thread's own state is deleted by Python before this
/// thread_local's destructor would run.
void keep_thread_state() {
  struct Keeper {
    Keeper() { PyGILState_Ensure(); }  // GIL held: only counts one more user
    ~Keeper() {
      if (Py_IsInitialized() == 0 || _Py_IsFinalizing()) return;  // the state goes with the process
      PyGILState_Ensure();                      // takes the GIL: two users now
      PyGILState_Release(PyGILState_LOCKED);    // one user, the GIL still held
      PyGILState_Release(PyGILState_UNLOCKED);  // none: deletes the state, drops the GIL
    }
  };
  thread_local Keeper keeper;
}

/// The handler for a Python function: unpacks the arguments (and keyword
/// arguments), calls it with the GIL, packs its result. A Python exception
/// reaches the caller as remote_error "Type: message".
RawHandler python_handler(py::function fn) {
  auto f = hold(std::move(fn));
  return [f](std::span<const std::byte> packed) -> Bytes {
    const bool fresh = PyGILState_GetThisThreadState() == nullptr;
    py::gil_scoped_acquire gil;
    if (fresh) keep_thread_state();
    try {
      auto oh = unpack_limited(packed);
      const msgpack::object& o = oh.get();
      if (o.type != msgpack::type::ARRAY) throw Error(Errc::kBadArguments, "arguments are not an array");
      std::uint32_t n = o.via.array.size;
      py::dict kwargs;
      if (n > 0 && o.via.array.ptr[n - 1].type == msgpack::type::EXT &&
          o.via.array.ptr[n - 1].via.ext.type() == kKwargsExt) {
        const auto& e = o.via.array.ptr[n - 1].via.ext;
        kwargs = py::reinterpret_borrow<py::dict>(unpack_py(std::span<const std::byte>(
            reinterpret_cast<const std::byte*>(e.data()), e.size)));
        --n;
      }
      py::tuple args(n);
      for (std::uint32_t i = 0; i < n; ++i) args[i] = to_py(o.via.array.ptr[i]);
      py::object result = (*f)(*args, **kwargs);
      msgpack::sbuffer buf;
      Packer pk(buf);
      pack_py(pk, result, 0);
      return to_bytes(buf);
    } catch (py::error_already_set& e) {
      const std::string what = py::str(e.type().attr("__name__")).cast<std::string>() + ": " +
                               py::str(e.value()).cast<std::string>();
      throw Error(Errc::kRemoteError, what);
    } catch (const msgpack::unpack_error& e) {
      throw Error(Errc::kBadArguments, std::string("cannot unpack arguments: ") + e.what());
    } catch (const msgpack::type_error& e) {
      throw Error(Errc::kBadArguments, std::string("cannot unpack arguments: ") + e.what());
    }
  };
}

CallOptions call_options(std::optional<double> timeout, const std::string& routing_key,
                         const std::string& version, const std::string& retry, bool trace) {
  CallOptions o;
  o.trace = trace;
  if (timeout) {
    if (*timeout <= 0) throw py::value_error("timeout must be > 0 seconds");
    o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(*timeout * 1000.0 + 0.5));
  }
  o.routing_key = routing_key;
  o.version = version;
  if (retry == "default") o.retry = RetryMode::kDefault;
  else if (retry == "never") o.retry = RetryMode::kNever;
  else if (retry == "idempotent") o.retry = RetryMode::kIdempotent;
  else throw py::value_error("retry must be 'default', 'never' or 'idempotent', got '" + retry + "'");
  return o;
}

/// (0, value) or (code, (name, message)): the Python layer raises.
py::tuple outcome(RawResult r) {
  if (r.ok()) {
    try {
      return py::make_tuple(0, unpack_py(r.value()));
    } catch (const std::exception& e) {  // msgpack limits, invalid UTF-8, an unhashable key
      return py::make_tuple(static_cast<int>(Errc::kBadArguments),
                            py::make_tuple(errc_name(Errc::kBadArguments), std::string("cannot unpack the result: ") + e.what()));
    }
  }
  const auto& e = r.error();
  return py::make_tuple(static_cast<int>(e.code()), py::make_tuple(errc_name(e.code()), std::string(e.what())));
}

/// Completions of calls started from asyncio, handed to the event loop
/// without the GIL: a node thread appends the raw result and bumps an
/// eventfd; the event loop watches the fd (loop.add_reader) and drains the
/// queue on its own thread, where Python objects are made.
class CompletionQueue {
 public:
  CompletionQueue() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw Error(Errc::kIoError, std::string("eventfd: ") + std::strerror(errno));
  }
  ~CompletionQueue() { ::close(fd_); }
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  int fd() const { return fd_; }

  /// Any thread; never takes the GIL.
  /// Wakes the loop only when the queue was empty: drain() reads the fd
  /// before it takes the items, so an item pushed meanwhile is either taken
  /// by this drain or announced for the next.
  void push(std::uint64_t id, RawResult r) {
    bool was_empty = false;
    {
      std::lock_guard lock(mu_);
      was_empty = items_.empty();
      items_.emplace_back(id, std::move(r));
    }
    if (!was_empty) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(fd_, &one, sizeof(one));
  }

  /// The event loop's thread, with the GIL: [(id, outcome), ...].
  py::list drain() {
    std::uint64_t count = 0;
    [[maybe_unused]] const auto n = ::read(fd_, &count, sizeof(count));
    std::deque<std::pair<std::uint64_t, RawResult>> items;
    {
      std::lock_guard lock(mu_);
      items.swap(items_);
    }
    py::list out;
    for (auto& [id, r] : items) out.append(py::make_tuple(id, outcome(std::move(r))));
    return out;
  }

 private:
  int fd_;
  std::mutex mu_;
  std::deque<std::pair<std::uint64_t, RawResult>> items_;
};

class PyNode {
 public:
  explicit PyNode(Config c) {
    py::gil_scoped_release nogil;
    node_ = std::make_unique<Node>(std::move(c));
  }
  ~PyNode() { stop(); }

  void stop() {
    if (!node_) return;
    if (getpid() != owner_pid_) {
      // A forked child: the node's threads run in the parent only, and
      // stopping would wait for them forever. What the child holds is a
      // copy of the parent's memory: left alone.
      (void)node_.release();
      return;
    }
    if (node_->in_loop_thread() || node_->in_worker_thread()) {
      // Closed (or dropped) by one of its own handlers: a node cannot wait
      // for its own threads. A helper thread stops and destroys it; it
      // finishes once this handler has returned.
      std::thread([n = std::move(node_)]() mutable { n.reset(); }).detach();
      return;
    }
    py::gil_scoped_release nogil;  // workers may be waiting for the GIL
    node_->stop();
  }

  Node& node() {
    if (!node_) throw py::value_error("the node is closed");
    return *node_;
  }

  /// A blocking call that Ctrl-C interrupts: waits with the GIL released,
  /// checking for signals every 50 ms.
  py::tuple call(const std::optional<std::string>& to, const std::string& service, const py::tuple& args,
                 const py::dict& kwargs, std::optional<double> timeout, const std::string& routing_key,
                 const std::string& version, const std::string& retry, bool trace) {
    Bytes packed = pack_args(args, kwargs);
    const CallOptions opts = call_options(timeout, routing_key, version, retry, trace);
    Endpoint dest;
    if (to) {
      std::string why;
      if (!Endpoint::parse(*to, dest, &why, false)) {
        return outcome(RawResult{Error(Errc::kInvalidArgument, "address " + *to + ": " + why)});
      }
    }
    Node& n = node();
    if (n.in_loop_thread()) {
      // A handler with run_on_loop=True (or caller-runs on a full pool):
      // waiting here would stop the loop that has to deliver the answer.
      return outcome(RawResult{Error(Errc::kInvalidArgument,
                                     "a blocking call on the node's loop thread would deadlock: make the handler "
                                     "run on the pool (run_on_loop=False) or use call_async")});
    }
    auto promise = std::make_shared<std::promise<RawResult>>();
    auto future = promise->get_future();
    auto done = [promise](RawResult r) { promise->set_value(std::move(r)); };
    bool ready = false;
    {
      // One GIL release for starting the call and the first wait.
      py::gil_scoped_release nogil;
      if (to) {
        n.call_raw_async(dest, service, std::move(packed), opts, std::move(done));
      } else {
        n.call_raw_async(service, std::move(packed), opts, std::move(done));
      }
      ready = future.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready;
    }
    while (!ready) {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      py::gil_scoped_release nogil;
      ready = future.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready;
    }
    return outcome(future.get());
  }

  /// Starts a call whose outcome goes to `queue` under `id`.
  void call_queued(const std::optional<std::string>& to, const std::string& service, const py::tuple& args,
                   const py::dict& kwargs, std::optional<double> timeout, const std::string& routing_key,
                   const std::string& version, const std::string& retry, bool trace,
                   const std::shared_ptr<CompletionQueue>& queue, std::uint64_t id) {
    Bytes packed = pack_args(args, kwargs);
    const CallOptions opts = call_options(timeout, routing_key, version, retry, trace);
    auto completion = [queue, id](RawResult r) { queue->push(id, std::move(r)); };
    py::gil_scoped_release nogil;
    if (to) {
      Endpoint e;
      std::string why;
      if (!Endpoint::parse(*to, e, &why, false)) {
        completion(RawResult{Error(Errc::kInvalidArgument, "address " + *to + ": " + why)});
        return;
      }
      node().call_raw_async(e, service, std::move(packed), opts, completion);
    } else {
      node().call_raw_async(service, std::move(packed), opts, completion);
    }
  }

 private:
  std::unique_ptr<Node> node_;
  const pid_t owner_pid_ = getpid();
};

py::dict member_dict(const MemberInfo& m) {
  py::dict d;
  d["address"] = m.address.to_string();
  d["state"] = member_state_name(m.state);
  d["self"] = m.self;
  d["name"] = m.meta.name;
  d["version"] = m.meta.version;
  d["services"] = m.meta.services;
  d["weight"] = m.meta.weight;
  d["incarnation"] = m.incarnation;
  return d;
}

Config config_from(const std::optional<std::string>& path, const std::optional<std::string>& json) {
  if (path && json) throw py::value_error("give a config path or JSON text, not both");
  if (path) return load_config_file(*path);
  if (json) return parse_config(*json, "<json>");
  return default_config();
}

/// The seed's BroachPool on the C++ ThreadPool: the same rules (core,
/// threadMax, keepAliveTime, queueMax, isExcInfo, createThreadThreshold).
class PyPool {
 public:
  PyPool(const ThreadPoolConfig& c, const std::string& name) : pool_(std::make_unique<ThreadPool>(c, name)) {}
  ~PyPool() {
    if (!pool_) return;
    if (getpid() != owner_pid_) {
      (void)pool_.release();  // a forked child: the workers run in the parent (see PyNode::stop)
      return;
    }
    if (pool_->in_worker_thread()) {
      // Dropped by one of its own tasks: a helper thread joins the workers.
      std::thread([p = std::move(pool_)]() mutable { p.reset(); }).detach();
      return;
    }
    py::gil_scoped_release nogil;
    pool_.reset();
  }

  /// Runs fn() on the pool; `settle(ok, value_or_exception)` gets the
  /// outcome. A refusal raises (queue full with isExcInfo, or shut down);
  /// a full queue without isExcInfo runs fn on this thread (caller-runs).
  void submit(py::function fn, py::function settle) {
    if (!pool_) throw Error(Errc::kPoolShutdown, "the pool is shut down");
    auto f = hold(std::move(fn));
    auto s = hold(std::move(settle));
    Task task = [f, s] {
      if (Py_IsInitialized() == 0 || _Py_IsFinalizing()) return;
      const bool fresh = PyGILState_GetThisThreadState() == nullptr;
      py::gil_scoped_acquire gil;
      if (fresh) keep_thread_state();
      try {
        py::object r = (*f)();
        (*s)(true, r);
      } catch (py::error_already_set& err) {
        py::object exc = err.value();
        try {
          (*s)(false, exc);
        } catch (py::error_already_set& e2) {
          e2.discard_as_unraisable("broach: pool task");
        }
      }
    };
    Errc e;
    {
      // A submit may join a retired worker whose thread-state keeper needs
      // the GIL on its way out; caller-runs takes the GIL itself.
      py::gil_scoped_release nogil;
      e = pool_->try_submit(std::move(task));
    }
    if (e == Errc::kQueueFull) throw Error(e, "the pool's queue (queueMax) and threads (threadMax) are full");
    if (e == Errc::kPoolShutdown) throw Error(e, "the pool is shut down");
  }

  /// Runs what is queued, then stops the threads; the object stays (a later
  /// submit is refused). Safe from one of the pool's own tasks.
  void shutdown() {
    if (!pool_ || getpid() != owner_pid_) return;  // a forked child: its workers are the parent's
    py::gil_scoped_release nogil;  // queued tasks still run and need the GIL
    pool_->shutdown();
  }

  py::dict stats() const {
    py::dict d;
    if (!pool_) return d;
    const auto st = pool_->stats();
    d["threads"] = st.threads;
    d["idle"] = st.idle;
    d["queued"] = st.queued;
    d["completed"] = st.completed;
    d["rejected"] = st.rejected;
    d["caller_ran"] = st.caller_ran;
    return d;
  }

 private:
  std::unique_ptr<ThreadPool> pool_;
  const pid_t owner_pid_ = getpid();
};

}  // namespace

PYBIND11_MODULE(_broach, m) {
  m.doc() = "BroachRpc's C++ core (use the broach and BroachRpc packages)";

  // Every Errc: code -> name, for the Python exception classes.
  py::dict codes;
  for (int c = 0; c <= static_cast<int>(Errc::kPeerGone); ++c) {
    codes[py::int_(c)] = errc_name(static_cast<Errc>(c));
  }
  m.attr("ERRC") = codes;

  // C++ exceptions thrown by the core (bad config, bind failures) arrive as
  // _broach.CoreError(code, name, message); the Python layer maps them.
  static py::exception<Error> core_error(m, "CoreError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetObject(core_error.ptr(), py::make_tuple(static_cast<int>(e.code()), errc_name(e.code()), e.what()).ptr());
    }
  });

  py::class_<CompletionQueue, std::shared_ptr<CompletionQueue>>(m, "CompletionQueue")
      .def(py::init<>())
      .def_property_readonly("fd", &CompletionQueue::fd)
      .def("drain", &CompletionQueue::drain);

  py::class_<PyNode>(m, "Node")
      .def(py::init([](std::optional<std::string> path, std::optional<std::string> json) {
             return std::make_unique<PyNode>(config_from(path, json));
           }),
           py::arg("path") = py::none(), py::arg("json") = py::none())
      .def_property_readonly("address", [](PyNode& n) { return n.node().address().to_string(); })
      .def_property_readonly("http_address", [](PyNode& n) { return n.node().http_address(); })
      .def_property_readonly("config_source", [](PyNode& n) { return n.node().config().source; })
      .def_property_readonly("thread_pool", [](PyNode& n) {
        const auto& t = n.node().config().thread_pool;
        py::dict d;
        d["core"] = t.core;
        d["threadMax"] = t.thread_max;
        d["keepAliveTime"] = t.keep_alive_time;
        d["queueMax"] = t.queue_max;
        d["isExcInfo"] = t.is_exc_info;
        d["createThreadThreshold"] = t.create_thread_threshold;
        return d;
      })
      .def("provide",
           [](PyNode& n, const std::string& name, py::function fn, bool run_on_loop) {
             n.node().provide_raw(name, python_handler(std::move(fn)), ServiceOptions{run_on_loop});
           },
           py::arg("name"), py::arg("fn"), py::arg("run_on_loop") = false)
      .def("withdraw", [](PyNode& n, const std::string& name) { return n.node().withdraw(name); })
      .def("call", &PyNode::call, py::arg("to"), py::arg("service"), py::arg("args"), py::arg("kwargs"),
           py::arg("timeout"), py::arg("routing_key"), py::arg("version"), py::arg("retry"), py::arg("trace"))
      .def("call_queued", &PyNode::call_queued, py::arg("to"), py::arg("service"), py::arg("args"),
           py::arg("kwargs"), py::arg("timeout"), py::arg("routing_key"), py::arg("version"), py::arg("retry"),
           py::arg("trace"), py::arg("queue"), py::arg("id"))
      .def("members",
           [](PyNode& n) {
             std::vector<MemberInfo> ms;
             {
               py::gil_scoped_release nogil;
               ms = n.node().members();
             }
             py::list out;
             for (const auto& mi : ms) out.append(member_dict(mi));
             return out;
           })
      .def("routes",
           [](PyNode& n) {
             std::vector<ServiceRoute> rs;
             {
               py::gil_scoped_release nogil;
               rs = n.node().routes();
             }
             py::dict out;
             for (const auto& r : rs) {
               py::list providers;
               for (const auto& p : r.providers) providers.append(p.address.to_string());
               out[py::str(r.service)] = providers;
             }
             return out;
           })
      .def("stats_json",
           [](PyNode& n) {
             py::gil_scoped_release nogil;
             return n.node().stats_json();
           })
      .def("stop", &PyNode::stop);

  py::class_<PyPool>(m, "Pool")
      .def(py::init([](int core, int thread_max, double keep_alive, int queue_max, bool is_exc_info,
                       int create_thread_threshold, const std::string& name) {
             ThreadPoolConfig c;
             c.core = core;
             c.thread_max = thread_max;
             c.keep_alive_time = keep_alive;
             c.queue_max = queue_max;
             c.is_exc_info = is_exc_info;
             c.create_thread_threshold = create_thread_threshold;
             if (core < 0 || thread_max < 1 || core > thread_max || queue_max < 0 || keep_alive < 0 ||
                 create_thread_threshold < 0) {
               throw py::value_error("pool: need 0 <= core <= threadMax, threadMax >= 1, queueMax >= 0, "
                                     "keepAliveTime >= 0, createThreadThreshold >= 0");
             }
             return std::make_unique<PyPool>(c, name);
           }),
           py::arg("core"), py::arg("thread_max"), py::arg("keep_alive"), py::arg("queue_max"),
           py::arg("is_exc_info"), py::arg("create_thread_threshold"), py::arg("name"))
      .def("submit", &PyPool::submit)
      .def("shutdown", &PyPool::shutdown)
      .def("stats", &PyPool::stats);

  m.def("pack", [](py::object v) {
    msgpack::sbuffer buf;
    Packer pk(buf);
    pack_py(pk, v, 0);
    return py::bytes(buf.data(), buf.size());
  });
  m.def("unpack", [](py::bytes b) {
    std::string s = b;
    return unpack_py(std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()));
  });
}

}  // namespace broach::python
