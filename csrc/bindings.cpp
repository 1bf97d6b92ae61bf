// The one binding layer between Python and the C++ core: Python never reaches into C++ state.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "token_ops.h"

namespace nb = nanobind;

using TokenArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

NB_MODULE(_C, m) {
  m.doc() = "rftfast C++ core (prefix cache primitives)";
  m.def(
      "common_prefix_length",
      [](TokenArray a, TokenArray b) {
        return rftfast::common_prefix_length(a.data(), a.shape(0), b.data(), b.shape(0));
      },
      nb::arg("a"), nb::arg("b"),
      "Length of the longest common prefix of two 1-D int32 token arrays (C-contiguous, on CPU).");
}
