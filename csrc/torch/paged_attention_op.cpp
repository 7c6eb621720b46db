// torch.ops.thinkc.paged_attention(q, k_pool, v_pool, block_table, page_size, kv_len, mask, scale) -> out:
// attention of q [b, Hq, W, D] over the logical keys [0, kv_len) of each row of a paged KV pool
// ([1, H, P, D] K and V, rows mapped through block_table int32 [b, max_pages]) with an additive mask
// [b, 1, W, kv_len]; mask entries <= finfo(dtype).min (or -inf) are skipped without reading K / V, and a
// query with no visible key gives zeros. CPU only (cpu/paged_attention.cpp; on CUDA the engine uses
// FlexAttention). Units of (row, KV head, query chunk) are split over threads by at::parallel_for, which
// is only parallel when the extension is compiled with -fopenmp (setup.py does not pass it at present:
// then every unit runs on the calling thread).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "cpu/paged_attention.h"

namespace {

thinkc::PagedDtype dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return thinkc::PagedDtype::kFloat32;
    case at::kBFloat16:
      return thinkc::PagedDtype::kBFloat16;
    case at::kHalf:
      return thinkc::PagedDtype::kFloat16;
    default:
      TORCH_CHECK_VALUE(false, "paged_attention: dtype must be float32, bfloat16 or float16, got ", t);
  }
  return thinkc::PagedDtype::kFloat32;  // not reached
}

// Shapes, dtypes, devices (metadata only: never reads tensor data).
void check_inputs(const at::Tensor& q, const at::Tensor& k_pool, const at::Tensor& v_pool,
                  const at::Tensor& block_table, int64_t page_size, int64_t kv_len, const at::Tensor& mask) {
  TORCH_CHECK_VALUE(q.dim() == 4, "paged_attention: q must be [b, Hq, W, D], got ", q.sizes());
  TORCH_CHECK_VALUE(k_pool.dim() == 4 && k_pool.size(0) == 1, "paged_attention: k_pool must be [1, H, P, D], got ",
                    k_pool.sizes());
  TORCH_CHECK_VALUE(v_pool.sizes() == k_pool.sizes(), "paged_attention: v_pool is ", v_pool.sizes(), ", k_pool ",
                    k_pool.sizes());
  TORCH_CHECK_VALUE(k_pool.is_contiguous() && v_pool.is_contiguous(), "paged_attention: pools must be contiguous");
  for (const at::Tensor* t : {&q, &k_pool, &v_pool, &block_table, &mask})
    TORCH_CHECK_VALUE(t->device().is_cpu(), "paged_attention: the CPU op got a tensor on ", t->device());
  dtype_of(q.scalar_type());
  TORCH_CHECK_VALUE(k_pool.scalar_type() == q.scalar_type() && v_pool.scalar_type() == q.scalar_type() &&
                        mask.scalar_type() == q.scalar_type(),
                    "paged_attention: q, k_pool, v_pool and mask must share one dtype, got ", q.scalar_type(), ", ",
                    k_pool.scalar_type(), ", ", v_pool.scalar_type(), ", ", mask.scalar_type());
  const int64_t b = q.size(0), Hq = q.size(1), W = q.size(2), H = k_pool.size(1);
  TORCH_CHECK_VALUE(q.size(3) == k_pool.size(3), "paged_attention: q head dim ", q.size(3), " != pool head dim ",
                    k_pool.size(3));
  TORCH_CHECK_VALUE(H >= 1 && Hq % H == 0, "paged_attention: query heads ", Hq, " not a multiple of KV heads ", H);
  TORCH_CHECK_VALUE(block_table.scalar_type() == at::kInt && block_table.dim() == 2 && block_table.size(0) == b,
                    "paged_attention: block_table must be int32 [b=", b, ", max_pages], got ",
                    block_table.scalar_type(), " ", block_table.sizes());
  TORCH_CHECK_VALUE(page_size >= 1, "paged_attention: page_size must be >= 1, got ", page_size);
  TORCH_CHECK_VALUE(k_pool.size(2) % page_size == 0, "paged_attention: pool slots P=", k_pool.size(2),
                    " are not a whole number of pages of page_size=", page_size);
  TORCH_CHECK_VALUE(kv_len >= 0 && kv_len <= block_table.size(1) * page_size, "paged_attention: kv_len=", kv_len,
                    " outside [0, max_pages * page_size=", block_table.size(1) * page_size, "]");
  TORCH_CHECK_VALUE(mask.dim() == 4 && mask.size(0) == b && mask.size(1) == 1 && mask.size(2) == W &&
                        mask.size(3) == kv_len,
                    "paged_attention: mask must be [b, 1, W, kv_len] = [", b, ", 1, ", W, ", ", kv_len, "], got ",
                    mask.sizes());
}

at::Tensor paged_attention_cpu(const at::Tensor& q, const at::Tensor& k_pool, const at::Tensor& v_pool,
                               const at::Tensor& block_table, int64_t page_size, int64_t kv_len, const at::Tensor& mask,
                               double scale) {
  check_inputs(q, k_pool, v_pool, block_table, page_size, kv_len, mask);
  const at::Tensor qc = q.contiguous(), table = block_table.contiguous();
  const at::Tensor m = mask.size(3) <= 1 || mask.stride(3) == 1 ? mask : mask.contiguous();  // rows: any strides
  at::Tensor out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  thinkc::PagedAttentionArgs a;
  a.q = qc.data_ptr(), a.k_pool = k_pool.data_ptr(), a.v_pool = v_pool.data_ptr();
  a.block_table = table.data_ptr<int32_t>(), a.mask = m.data_ptr(), a.out = out.data_ptr();
  a.b = q.size(0), a.Hq = q.size(1), a.W = q.size(2), a.D = q.size(3), a.H = k_pool.size(1), a.P = k_pool.size(2);
  a.max_pages = table.size(1), a.page_size = page_size, a.kv_len = kv_len;
  a.mask_sb = m.stride(0), a.mask_sw = m.stride(2), a.scale = static_cast<float>(scale);
  a.dtype = dtype_of(q.scalar_type());
  const char* err = thinkc::paged_attention_check(a);
  TORCH_CHECK_VALUE(*err == '\0', "paged_attention: ", err);

  std::atomic<int64_t> bad{-1};
  at::parallel_for(0, thinkc::paged_attention_units(a), 1, [&](int64_t begin, int64_t end) {
    const int64_t e = thinkc::paged_attention_run(a, begin, end);
    int64_t none = -1;
    if (e >= 0) bad.compare_exchange_strong(none, e);
  });
  const int64_t e = bad.load();
  if (e >= 0) {
    const int64_t row = e / a.max_pages, col = e % a.max_pages;
    TORCH_CHECK_VALUE(false, "paged_attention: row ", row, ": block_table[", row, ", ", col, "] = ",
                      a.block_table[e], " is not a page of the pool [0, ", a.P / page_size,
                      ") but holds keys the mask shows");
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(thinkc, m) {
  m.def(
      "paged_attention(Tensor q, Tensor k_pool, Tensor v_pool, Tensor block_table, int page_size, int kv_len, "
      "Tensor mask, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(thinkc, CPU, m) { m.impl("paged_attention", &paged_attention_cpu); }
