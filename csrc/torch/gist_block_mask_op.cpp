// torch.ops.thinkc.build_gist_block_mask: the gist BlockMask tensors (FlexAttention's
// kv_num_blocks / kv_indices / full_kv_num_blocks / full_kv_indices, H = 1) from per-token metadata.
// CPU kernel: cpu/gist_block_mask.cpp (rows in parallel); CUDA kernel: cuda/gist_block_mask.cu.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <mutex>
#include <string>
#include <tuple>

#include "cpu/gist_block_mask.h"
#ifdef THINKC_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/gist_block_mask.cuh"
#endif

namespace {

using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct Prepared {
  at::Tensor role, seg, doc, expire;
  int64_t B, L, n_q, n_kv;
};

// Checks shapes and makes int32 contiguous [B, L] copies (metadata is int8/int32; cheap, O(L)).
Prepared prepare(const at::Tensor& role, const at::Tensor& seg, const at::Tensor& doc, const at::Tensor& expire,
                 int64_t q_block, int64_t kv_block) {
  TORCH_CHECK_VALUE(q_block > 0 && kv_block > 0, "build_gist_block_mask: block sizes must be positive");
  TORCH_CHECK_VALUE(role.dim() == 2, "build_gist_block_mask: metadata must be [B, L], got ", role.sizes());
  for (const auto* t : {&seg, &doc, &expire}) {
    TORCH_CHECK_VALUE(t->sizes() == role.sizes(), "build_gist_block_mask: role/seg/doc/expire shapes differ");
    TORCH_CHECK_VALUE(t->device() == role.device(), "build_gist_block_mask: metadata on different devices");
  }
  auto i32 = [](const at::Tensor& t) { return t.to(at::kInt).contiguous(); };
  const int64_t B = role.size(0), L = role.size(1);
  return {i32(role), i32(seg), i32(doc), i32(expire), B, L, (L + q_block - 1) / q_block, (L + kv_block - 1) / kv_block};
}

Out allocate(const Prepared& p) {
  auto opts = p.role.options().dtype(at::kInt);
  return {at::empty({p.B, 1, p.n_q}, opts), at::empty({p.B, 1, p.n_q, p.n_kv}, opts),
          at::empty({p.B, 1, p.n_q}, opts), at::empty({p.B, 1, p.n_q, p.n_kv}, opts)};
}

Out build_cpu(const at::Tensor& role, const at::Tensor& seg, const at::Tensor& doc, const at::Tensor& expire,
              int64_t q_block, int64_t kv_block, bool see_current, bool bi_directional, bool diagonal) {
  Prepared p = prepare(role, seg, doc, expire, q_block, kv_block);
  Out out = allocate(p);
  const thinkc::GistMaskFlags flags{see_current, bi_directional, diagonal};
  const int32_t *r = p.role.data_ptr<int32_t>(), *s = p.seg.data_ptr<int32_t>(), *d = p.doc.data_ptr<int32_t>(),
                *e = p.expire.data_ptr<int32_t>();
  int32_t *num = std::get<0>(out).data_ptr<int32_t>(), *idx = std::get<1>(out).data_ptr<int32_t>(),
          *fnum = std::get<2>(out).data_ptr<int32_t>(), *fidx = std::get<3>(out).data_ptr<int32_t>();
  const int64_t L = p.L, n_q = p.n_q, tiles = p.n_q * p.n_kv;
  std::string error;
  std::mutex error_lock;
  at::parallel_for(0, p.B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      std::string err = thinkc::gist_block_mask_row(r + b * L, s + b * L, d + b * L, e + b * L, L, q_block, kv_block,
                                                    flags, num + b * n_q, idx + b * tiles, fnum + b * n_q,
                                                    fidx + b * tiles);
      if (!err.empty()) {
        std::lock_guard<std::mutex> guard(error_lock);
        error = "row " + std::to_string(b) + ": " + err;
      }
    }
  });
  TORCH_CHECK_VALUE(error.empty(), error);
  return out;
}

#ifdef THINKC_WITH_CUDA
Out build_cuda(const at::Tensor& role, const at::Tensor& seg, const at::Tensor& doc, const at::Tensor& expire,
               int64_t q_block, int64_t kv_block, bool see_current, bool bi_directional, bool diagonal) {
  c10::cuda::CUDAGuard guard(role.device());
  Prepared p = prepare(role, seg, doc, expire, q_block, kv_block);
  Out out = allocate(p);
  at::Tensor workspace = at::empty(
      {static_cast<int64_t>(thinkc::gist_block_mask_workspace_bytes(p.B, p.L, q_block, kv_block))},
      p.role.options().dtype(at::kByte));
  thinkc::GistBlockMaskCudaArgs args;
  args.role = p.role.data_ptr<int32_t>();
  args.seg = p.seg.data_ptr<int32_t>();
  args.doc = p.doc.data_ptr<int32_t>();
  args.expire = p.expire.data_ptr<int32_t>();
  args.B = p.B;
  args.L = p.L;
  args.q_block = q_block;
  args.kv_block = kv_block;
  args.flags = thinkc::GistMaskFlags{see_current, bi_directional, diagonal};
  args.kv_num_blocks = std::get<0>(out).data_ptr<int32_t>();
  args.kv_indices = std::get<1>(out).data_ptr<int32_t>();
  args.full_kv_num_blocks = std::get<2>(out).data_ptr<int32_t>();
  args.full_kv_indices = std::get<3>(out).data_ptr<int32_t>();
  args.workspace = workspace.data_ptr();
  cudaError_t err = thinkc::gist_block_mask_cuda(args, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "build_gist_block_mask CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(thinkc, m) {
  m.def(
      "build_gist_block_mask(Tensor role, Tensor seg, Tensor doc, Tensor expire, int q_block, int kv_block, "
      "bool see_current, bool bi_directional, bool diagonal) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(thinkc, CPU, m) { m.impl("build_gist_block_mask", &build_cpu); }

#ifdef THINKC_WITH_CUDA
TORCH_LIBRARY_IMPL(thinkc, CUDA, m) { m.impl("build_gist_block_mask", &build_cuda); }
#endif
