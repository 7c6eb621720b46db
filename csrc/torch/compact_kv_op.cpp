// torch.ops.thinkc.compact_kv: in-place compaction of every layer's K and V cache in one call.
// CPU kernel: cpu/compact_kv.cpp (memmove per (cache, row, head), in parallel); CUDA kernel:
// cuda/compact_kv.cu (no host sync; the CUDA path validates ranges on the device and leaves an
// invalid row untouched, so the Python wrapper's check=True is what raises for bad ranges there).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cpu/compact_kv.h"
#ifdef THINKC_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/compact_kv.cuh"
#endif

namespace {

// Shape/dtype/device checks shared by both devices (metadata only: never reads tensor data).
void check_inputs(at::TensorList caches, const at::Tensor& ranges, const at::Tensor& offsets,
                  const at::Tensor& lengths) {
  TORCH_CHECK_VALUE(!caches.empty(), "compact_kv: caches is empty");
  const at::Tensor& first = caches[0];
  TORCH_CHECK_VALUE(first.dim() == 4, "compact_kv: caches must be [B, H, C, D], got ", first.sizes());
  for (size_t i = 0; i < caches.size(); ++i) {
    const at::Tensor& c = caches[i];
    TORCH_CHECK_VALUE(c.sizes() == first.sizes(), "compact_kv: cache ", i, " has shape ", c.sizes(), ", cache 0 ",
                      first.sizes());
    TORCH_CHECK_VALUE(c.scalar_type() == first.scalar_type(), "compact_kv: caches must share one dtype");
    TORCH_CHECK_VALUE(c.device() == first.device(), "compact_kv: caches must be on one device");
    TORCH_CHECK_VALUE(c.is_contiguous(), "compact_kv: cache ", i, " is not contiguous");
  }
  const int64_t B = first.size(0);
  auto check_i32 = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.scalar_type() == at::kInt, "compact_kv: ", name, " must be int32, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == first.device(), "compact_kv: ", name, " must be on the caches' device");
    TORCH_CHECK_VALUE(t.is_contiguous(), "compact_kv: ", name, " must be contiguous");
  };
  check_i32(ranges, "ranges");
  check_i32(offsets, "range_offsets");
  check_i32(lengths, "lengths");
  TORCH_CHECK_VALUE(ranges.dim() == 2 && ranges.size(1) == 2, "compact_kv: ranges must be [R, 2], got ",
                    ranges.sizes());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) == B + 1, "compact_kv: range_offsets must be [B+1] = [",
                    B + 1, "], got ", offsets.sizes());
  TORCH_CHECK_VALUE(lengths.dim() == 1 && lengths.size(0) == B, "compact_kv: lengths must be [B] = [", B, "], got ",
                    lengths.sizes());
}

void compact_cpu(at::TensorList caches, const at::Tensor& ranges, const at::Tensor& offsets,
                 const at::Tensor& lengths) {
  check_inputs(caches, ranges, offsets, lengths);
  const int64_t B = caches[0].size(0), H = caches[0].size(1), C = caches[0].size(2);
  const int64_t row_bytes = caches[0].size(3) * caches[0].element_size();
  const int32_t* r = ranges.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  int32_t* len = lengths.data_ptr<int32_t>();
  const std::string err = thinkc::compact_kv_check(r, off, len, B, ranges.size(0), C);
  TORCH_CHECK_VALUE(err.empty(), "compact_kv: ", err);

  std::vector<char*> bases;
  for (const at::Tensor& c : caches) bases.push_back(static_cast<char*>(c.data_ptr()));
  const int64_t T = static_cast<int64_t>(bases.size()), units = T * B * H;
  const int64_t head_bytes = C * row_bytes;
  // One unit = one (cache, row, head) sequence; units are independent.
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t t = u / (B * H), bh = u % (B * H), b = bh / H;
      thinkc::compact_kv_head(bases[t] + bh * head_bytes, row_bytes, r + 2 * off[b], off[b + 1] - off[b], len[b]);
    }
  });
  for (int64_t b = 0; b < B; ++b) len[b] = static_cast<int32_t>(thinkc::compact_kv_new_length(r, off, b));
}

#ifdef THINKC_WITH_CUDA
void compact_cuda(at::TensorList caches, const at::Tensor& ranges, const at::Tensor& offsets,
                  const at::Tensor& lengths) {
  check_inputs(caches, ranges, offsets, lengths);
  c10::cuda::CUDAGuard guard(caches[0].device());
  const int64_t B = caches[0].size(0), C = caches[0].size(2);
  at::Tensor workspace = at::empty({static_cast<int64_t>(thinkc::compact_kv_workspace_bytes(B, C))},
                                   lengths.options().dtype(at::kByte));
  std::vector<void*> ptrs;
  for (const at::Tensor& c : caches) ptrs.push_back(c.data_ptr());
  thinkc::CompactKvCudaArgs args;
  args.caches = ptrs.data();
  args.num_caches = static_cast<int64_t>(ptrs.size());
  args.B = B;
  args.H = caches[0].size(1);
  args.C = C;
  args.row_bytes = caches[0].size(3) * caches[0].element_size();
  args.ranges = ranges.data_ptr<int32_t>();
  args.num_ranges = ranges.size(0);
  args.offsets = offsets.data_ptr<int32_t>();
  args.lengths = lengths.data_ptr<int32_t>();
  args.workspace = workspace.data_ptr();
  cudaError_t err = thinkc::compact_kv_cuda(args, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "compact_kv CUDA launch failed: ", cudaGetErrorString(err));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(thinkc, m) {
  m.def("compact_kv(Tensor(a!)[] caches, Tensor ranges, Tensor range_offsets, Tensor(b!) lengths) -> ()");
}

TORCH_LIBRARY_IMPL(thinkc, CPU, m) { m.impl("compact_kv", &compact_cpu); }

#ifdef THINKC_WITH_CUDA
TORCH_LIBRARY_IMPL(thinkc, CUDA, m) { m.impl("compact_kv", &compact_cuda); }
#endif
