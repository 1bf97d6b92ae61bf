// The one binding layer between Python and the C++ core: Python never reaches into C++ state.
//
// The prefix cache's calls are short (a walk at memcmp speed), so what they cost is mostly crossing into
// C++ and back. This layer keeps that small:
//   - tokens are read straight from what the caller has: an exact list or tuple of exact ints (read item by item
//     from the int objects, no call per item) or a 1-D C-contiguous int32 buffer (numpy, array.array: no copy);
//     block ids from an exact list or tuple of ints. Anything else goes to the converters the Python wrapper
//     passes in (`convert_tokens`, `convert_block_ids`), which convert it or raise the reason; without them,
//     TypeError;
//   - block ids come back as Python lists built from one int object per block id, made on first use and kept
//     (making ~100 fresh ints per match costs more than the whole walk);
//   - with `result_types`, match and insert build the wrapper's own result tuples (Match, Inserted,
//     CopyOnWrite) here, as `tuple.__new__` would, instead of returning raw tuples for Python to wrap, so the
//     wrapper can hand out these two methods as they are;
//   - the token, block and allocate scratch is kept between calls: no allocation per call.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/vector.h>

#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>
#endif

#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "radix_cache.h"
#include "token_ops.h"

namespace nb = nanobind;
using namespace nb::literals;

using TokenArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

namespace {

// ------------------------------------------------------------------------------------------------------------
// Reading Python input
// ------------------------------------------------------------------------------------------------------------

// The value of a one-digit exact int (|v| < 2**30, every token id in practice), read from the object itself.
inline bool compact_int(PyObject* o, int64_t& out) {
  if (Py_TYPE(o) != &PyLong_Type) return false;
  PyLongObject* v = reinterpret_cast<PyLongObject*>(o);
#if PY_VERSION_HEX >= 0x030C0000
  if (!PyUnstable_Long_IsCompact(v)) return false;
  out = static_cast<int64_t>(PyUnstable_Long_CompactValue(v));
  return true;
#else
  const Py_ssize_t size = Py_SIZE(o);
  if (size == 1) {
    out = static_cast<int64_t>(v->ob_digit[0]);
  } else if (size == 0) {
    out = 0;
  } else if (size == -1) {
    out = -static_cast<int64_t>(v->ob_digit[0]);
  } else {
    return false;
  }
  return true;
#endif
}

// The value of an exact int (bool and other subclasses excluded) in int64 range.
inline bool exact_int(PyObject* o, int64_t& out) {
  if (compact_int(o, out)) return true;
  if (Py_TYPE(o) != &PyLong_Type) return false;
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow != 0) return false;
  out = static_cast<int64_t>(v);
  return true;
}

bool is_int32_format(const char* format) {
  if (format == nullptr) return false;  // the buffer did not say: not read here
  if (*format == '@' || *format == '=' || *format == '<') ++format;
  return (format[0] == 'i' || (format[0] == 'l' && sizeof(long) == 4)) && format[1] == '\0';
}

// Tokens as int32, without copying an int32 buffer. Holds what it read from (a buffer, a converted object) until
// it goes out of scope.
class Tokens {
 public:
  // Reads `obj`: a list or tuple into `scratch`, a buffer in place. If it is neither kind, or holds an item that is
  // not an exact int in int32 range, `convert(obj)` (if given) makes an int32 array of it or raises the reason,
  // and that array is read; TypeError if there is no converter, or it returned something else.
  Tokens(PyObject* obj, std::vector<int32_t>& scratch, const nb::object& convert) {
    if (read(obj, scratch)) return;
    if (!convert.is_valid()) not_tokens();
    converted_ = convert(nb::handle(obj));
    if (!read(converted_.ptr(), scratch)) not_tokens();
  }
  ~Tokens() {
    if (has_view_) PyBuffer_Release(&view_);
  }
  Tokens(const Tokens&) = delete;
  Tokens& operator=(const Tokens&) = delete;

  const int32_t* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  [[noreturn]] static void not_tokens() {
    throw nb::type_error("tokens: expected a list or tuple of ints in int32 range, or a 1-D C-contiguous int32 array");
  }

  bool read(PyObject* obj, std::vector<int32_t>& scratch) {
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
      const std::size_t n = static_cast<std::size_t>(Py_SIZE(obj));
      PyObject** items = PySequence_Fast_ITEMS(obj);
      if (scratch.size() < n) scratch.resize(n);
      int32_t* out = scratch.data();
      for (std::size_t i = 0; i < n; ++i) {
        int64_t v;
        if (!compact_int(items[i], v) && (!exact_int(items[i], v) || v < std::numeric_limits<int32_t>::min() ||
                                          v > std::numeric_limits<int32_t>::max())) {
          return false;
        }
        out[i] = static_cast<int32_t>(v);
      }
      data_ = out;
      size_ = n;
      return true;
    }
    if (!PyObject_CheckBuffer(obj)) return false;
    if (PyObject_GetBuffer(obj, &view_, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
      PyErr_Clear();  // not C-contiguous, or will not export: the converter copies it
      return false;
    }
    has_view_ = true;
    if (view_.ndim != 1 || view_.itemsize != 4 || !is_int32_format(view_.format)) {
      PyBuffer_Release(&view_);
      has_view_ = false;
      return false;
    }
    data_ = static_cast<const int32_t*>(view_.buf);
    size_ = static_cast<std::size_t>(view_.shape[0]);
    return true;
  }

  const int32_t* data_ = nullptr;
  std::size_t size_ = 0;
  bool has_view_ = false;
  Py_buffer view_{};
  nb::object converted_;
};

// Block ids from an exact list or tuple of exact ints into `scratch`; false for anything else.
bool read_ids(PyObject* obj, std::vector<int64_t>& scratch) {
  if (!PyList_CheckExact(obj) && !PyTuple_CheckExact(obj)) return false;
  const std::size_t n = static_cast<std::size_t>(Py_SIZE(obj));
  PyObject** items = PySequence_Fast_ITEMS(obj);
  scratch.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!exact_int(items[i], scratch[i])) return false;
  }
  return true;
}

// Marks a call in progress. Python code can run inside one (a converter, or a finaliser run by the garbage
// collector while a result is built); calling the same cache from there would overwrite the scratch the outer call
// is reading, so it is refused instead.
class Busy {
 public:
  explicit Busy(bool& flag) : flag_(flag) {
    if (flag_) throw std::runtime_error("RadixCache: called again from inside one of its own calls");
    flag_ = true;
  }
  ~Busy() { flag_ = false; }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  bool& flag_;
};

nb::object steal_or_throw(PyObject* o) {
  if (o == nullptr) throw nb::python_error();
  return nb::steal(o);
}

nb::dict stats_dict(const rftfast::CacheStats& s) {
  nb::dict d;
  d["lookups"] = s.lookups;
  d["hit_tokens"] = s.hit_tokens;
  d["miss_tokens"] = s.miss_tokens;
  d["nodes"] = s.nodes;
  d["cached_tokens"] = s.cached_tokens;
  d["free_blocks"] = s.free_blocks;
  d["held_blocks"] = s.held_blocks;
  d["cached_blocks"] = s.cached_blocks;
  d["evicted_blocks"] = s.evicted_blocks;
  return d;
}

// ------------------------------------------------------------------------------------------------------------
// The cache as Python sees it
// ------------------------------------------------------------------------------------------------------------

class PyRadixCache {
 public:
  // `result_types`: None, or (Match, Inserted, CopyOnWrite), the tuple subclasses match and insert then return.
  // `convert_tokens(tokens)`: None, or what makes an int32 array of tokens this layer does not read (or raises why
  // it cannot). `convert_block_ids(block_ids, where, num_blocks)`: None, or what makes a list of ints of block ids
  // this layer does not read (or raises why it cannot). Without them, such input raises TypeError.
  PyRadixCache(int64_t num_blocks, int64_t block_size, nb::handle result_types, nb::handle convert_tokens,
               nb::handle convert_block_ids)
      : cache_(num_blocks, block_size), block_ints_(static_cast<std::size_t>(num_blocks), nullptr) {
    if (!convert_tokens.is_none()) convert_tokens_ = nb::borrow(convert_tokens);
    if (!convert_block_ids.is_none()) convert_block_ids_ = nb::borrow(convert_block_ids);
    if (result_types.is_none()) return;
    nb::tuple types = nb::cast<nb::tuple>(result_types);
    if (types.size() != 3) throw nb::value_error("result_types: expected (Match, Inserted, CopyOnWrite)");
    for (std::size_t i = 0; i < 3; ++i) {
      PyObject* t = types[i].ptr();
      if (!PyType_Check(t) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t), &PyTuple_Type)) {
        throw nb::type_error("result_types: each must be a subclass of tuple");
      }
    }
    match_type_ = nb::borrow(types[0]);
    inserted_type_ = nb::borrow(types[1]);
    copy_type_ = nb::borrow(types[2]);
    node_name_ = steal_or_throw(PyUnicode_InternFromString("node"));
  }

  ~PyRadixCache() {
    for (PyObject* o : block_ints_) Py_XDECREF(o);
  }

  PyRadixCache(const PyRadixCache&) = delete;
  PyRadixCache& operator=(const PyRadixCache&) = delete;

  const rftfast::RadixCache& core() const { return cache_; }
  void lock(uint64_t node) {
    Busy busy(busy_);
    cache_.lock(node);
  }
  void unlock(uint64_t node) {
    Busy busy(busy_);
    cache_.unlock(node);
  }
  int64_t evict(int64_t n_blocks) {
    Busy busy(busy_);
    return cache_.evict(n_blocks);
  }

  // (matched_len, block_ids, node), or Match(matched_len, block_ids) with .node.
  nb::object match(nb::handle tokens) {
    Busy busy(busy_);
    Tokens in(tokens.ptr(), tokens_, convert_tokens_);
    const rftfast::MatchView view = cache_.match_view(in.data(), in.size());
    nb::object matched = steal_or_throw(PyLong_FromLongLong(view.matched_len));
    nb::object blocks = block_list(view.blocks, view.n_blocks);
    nb::object node = steal_or_throw(PyLong_FromUnsignedLongLong(view.node));
    if (!match_type_.is_valid()) return nb::make_tuple(matched, blocks, node);
    nb::object out = new_tuple(match_type_, {matched, blocks});
    if (PyObject_SetAttr(out.ptr(), node_name_.ptr(), node.ptr()) != 0) throw nb::python_error();
    return out;
  }

  // (node, (src_block, dst_block, n_tokens) | None), or Inserted(node, CopyOnWrite | None).
  nb::object insert(nb::handle tokens, nb::handle block_ids) {
    Busy busy(busy_);
    Tokens in(tokens.ptr(), tokens_, convert_tokens_);
    read_block_ids(block_ids, "insert");
    const rftfast::InsertResult r = cache_.insert(in.data(), in.size(), ids_.data(), ids_.size());
    nb::object node = steal_or_throw(PyLong_FromUnsignedLongLong(r.node));
    nb::object copy = nb::none();
    if (r.has_copy) {
      nb::object src = block_int(r.copy.src_block);
      nb::object dst = block_int(r.copy.dst_block);
      nb::object n = steal_or_throw(PyLong_FromLong(r.copy.n_tokens));
      copy = copy_type_.is_valid() ? new_tuple(copy_type_, {src, dst, n}) : nb::make_tuple(src, dst, n);
    }
    if (!inserted_type_.is_valid()) return nb::make_tuple(node, copy);
    return new_tuple(inserted_type_, {node, copy});
  }

  nb::object allocate(int64_t n) {
    Busy busy(busy_);
    cache_.allocate(n, allocated_);
    return block_list(allocated_.data(), allocated_.size());
  }

  void release(nb::handle block_ids) {
    Busy busy(busy_);
    read_block_ids(block_ids, "release");
    cache_.release(ids_.data(), ids_.size());
  }

  // The core's bookkeeping plus this layer's: the per-block int table, the ints made so far, the scratch.
  std::size_t memory_bytes() const {
    std::size_t ints = 0;
    for (PyObject* o : block_ints_) ints += o != nullptr;
    return cache_.memory_bytes() + block_ints_.capacity() * sizeof(PyObject*) + ints * sizeof(PyLongObject) +
           (tokens_.capacity() + allocated_.capacity()) * sizeof(int32_t) + ids_.capacity() * sizeof(int64_t);
  }

 private:
  // Block ids into ids_: a list or tuple of ints directly; anything else through convert_block_ids_, or without
  // one through nanobind's own conversion; TypeError if neither gives a list of ints.
  void read_block_ids(nb::handle block_ids, const char* where) {
    if (read_ids(block_ids.ptr(), ids_)) return;
    if (convert_block_ids_.is_valid()) {
      nb::object converted = convert_block_ids_(block_ids, where, cache_.num_blocks());
      if (read_ids(converted.ptr(), ids_)) return;
    } else if (nb::try_cast(block_ids, ids_)) {
      return;
    }
    throw nb::type_error("block_ids: expected a sequence of ints in int64 range");
  }

  // A new reference to block's int object.
  PyObject* block_ref(int32_t block) {
    PyObject*& o = block_ints_[static_cast<std::size_t>(block)];
    if (o == nullptr) {
      o = PyLong_FromLong(block);
      if (o == nullptr) throw nb::python_error();
    }
    Py_INCREF(o);
    return o;
  }

  nb::object block_int(int32_t block) { return nb::steal(block_ref(block)); }

  nb::object block_list(const int32_t* blocks, std::size_t n) {
    nb::object list = steal_or_throw(PyList_New(static_cast<Py_ssize_t>(n)));
    PyObject** items = reinterpret_cast<PyListObject*>(list.ptr())->ob_item;
    for (std::size_t i = 0; i < n; ++i) items[i] = block_ref(blocks[i]);
    return list;
  }

  // An instance of the tuple subclass `type` holding `items`, made as tuple.__new__(type, items) makes it.
  static nb::object new_tuple(const nb::object& type, std::initializer_list<nb::handle> items) {
    PyTypeObject* t = reinterpret_cast<PyTypeObject*>(type.ptr());
    nb::object out = steal_or_throw(t->tp_alloc(t, static_cast<Py_ssize_t>(items.size())));
    Py_ssize_t i = 0;
    for (nb::handle item : items) PyTuple_SET_ITEM(out.ptr(), i++, nb::borrow(item).release().ptr());
    return out;
  }

  rftfast::RadixCache cache_;
  std::vector<PyObject*> block_ints_;  // per block id: its int object, made on first use (owned references)
  std::vector<int32_t> tokens_;        // scratch: tokens read from a list or tuple
  std::vector<int64_t> ids_;           // scratch: block ids read from a list or tuple
  std::vector<int32_t> allocated_;     // scratch: allocate()'s blocks
  nb::object match_type_, inserted_type_, copy_type_, node_name_, convert_tokens_, convert_block_ids_;
  bool busy_ = false;
};

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "rftfast C++ core (prefix cache primitives)";
  m.def(
      "common_prefix_length",
      [](TokenArray a, TokenArray b) {
        return rftfast::common_prefix_length(a.data(), a.shape(0), b.data(), b.shape(0));
      },
      nb::arg("a"), nb::arg("b"),
      "Length of the longest common prefix of two 1-D int32 token arrays (C-contiguous, on CPU).");

  // Raw results (tuples, lists, dicts) unless `result_types` names the wrapper's result classes;
  // rftfast.generation.prefix_cache is the wrapper. Semantics: csrc/radix_cache.h.
  nb::class_<PyRadixCache>(m, "RadixCache", "Radix tree over int32 token ids whose nodes own KV blocks.")
      .def(
          "__init__",
          [](PyRadixCache* self, int64_t num_blocks, int64_t block_size, nb::handle result_types,
             nb::handle convert_tokens, nb::handle convert_block_ids) {
            new (self) PyRadixCache(num_blocks, block_size, result_types, convert_tokens, convert_block_ids);
          },
          "num_blocks"_a, "block_size"_a, "result_types"_a = nb::none(), "convert_tokens"_a = nb::none(),
          "convert_block_ids"_a = nb::none(),
          "result_types: (Match, Inserted, CopyOnWrite) for match/insert to return, else raw tuples; "
          "convert_tokens(tokens) / convert_block_ids(block_ids, where, num_blocks): what to call on input this "
          "layer does not read itself (else TypeError)")
      .def_prop_ro("num_blocks", [](const PyRadixCache& c) { return c.core().num_blocks(); })
      .def_prop_ro("block_size", [](const PyRadixCache& c) { return c.core().block_size(); })
      // An int64 array is refused (TypeError), not narrowed silently; the Python wrapper range-checks and converts.
      .def("match", &PyRadixCache::match, "tokens"_a, "match(tokens) -> (matched_len, block_ids, node)")
      .def("insert", &PyRadixCache::insert, "tokens"_a, "block_ids"_a,
           "insert(tokens, block_ids) -> (node, (src_block, dst_block, n_tokens) | None)")
      .def("allocate", &PyRadixCache::allocate, "n"_a)
      .def("release", &PyRadixCache::release, "block_ids"_a)
      .def("lock", &PyRadixCache::lock, "node"_a)
      .def("unlock", &PyRadixCache::unlock, "node"_a)
      .def("evict", &PyRadixCache::evict, "n_blocks"_a)
      .def("stats", [](const PyRadixCache& c) { return stats_dict(c.core().stats()); })
      .def("memory_bytes", &PyRadixCache::memory_bytes)
      .def("check_invariants", [](const PyRadixCache& c) { c.core().check_invariants(); });
}
