// Python module thinkc._C. Importing it registers the thinkc:: torch ops defined in csrc/torch/
// (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL): Python calls them as torch.ops.thinkc.<name>.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "thinkc C++/CUDA ops (registered as torch.ops.thinkc.*)";
#ifdef THINKC_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
