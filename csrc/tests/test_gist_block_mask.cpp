// Self-checking test of the CPU gist BlockMask builder against brute force: random rows (random
// roles, segments, documents, expiries, flags, block sizes), every (q, k) pair evaluated with the
// scalar rule, tiles counted and listed the way torch's create_block_mask does.
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/gist_block_mask.h"

using thinkc::GistMaskFlags;

namespace {

struct Row {
  std::vector<int32_t> role, seg, doc, expire;
};

Row random_row(std::mt19937& rng, int L) {
  Row r{std::vector<int32_t>(L), std::vector<int32_t>(L), std::vector<int32_t>(L), std::vector<int32_t>(L)};
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // Documents: contiguous runs 0, 1, ..., optional padding (-1) anywhere between runs.
  int doc = -1, i = 0;
  while (i < L) {
    int len = uni(1, L), id = uni(0, 3) == 0 ? -1 : ++doc;
    for (int j = 0; j < len && i < L; ++j, ++i) r.doc[i] = id;
  }
  int seg = 0;
  for (int t = 0; t < L; ++t) {
    r.role[t] = uni(0, 3) == 0 ? thinkc::kGistRoleCache : uni(0, 7);
    if (uni(0, 5) == 0) seg = uni(-1, L - 1);  // segments mostly local, sometimes scattered
    r.seg[t] = uni(0, 7) == 0 ? -1 : seg;
    const int e = uni(0, 4);
    r.expire[t] = e == 0 ? (1 << 30) : e == 1 ? uni(0, L) : std::min(L, t + uni(0, 2 * L / 3 + 1));
  }
  return r;
}

bool check(const Row& r, int L, int qb, int kb, GistMaskFlags f) {
  const int nq = (L + qb - 1) / qb, nk = (L + kb - 1) / kb;
  std::vector<int32_t> num(nq), idx(nq * nk), fnum(nq), fidx(nq * nk);
  std::string err = thinkc::gist_block_mask_cpu(r.role.data(), r.seg.data(), r.doc.data(), r.expire.data(), 1, L, qb, kb,
                                                f, num.data(), idx.data(), fnum.data(), fidx.data());
  if (!err.empty()) {
    std::printf("unexpected error: %s\n", err.c_str());
    return false;
  }
  std::vector<int> count(nq * nk, 0);
  for (int q = 0; q < L; ++q)
    for (int k = 0; k < L; ++k)
      count[(q / qb) * nk + k / kb] += thinkc::gist_visible(q, k, r.role[q], r.seg[q], r.doc[q], r.role[k], r.seg[k],
                                                            r.doc[k], r.expire[k], f);
  for (int i = 0; i < nq; ++i) {
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<int32_t> want;
      for (int sel = 1; sel >= 0; --sel)
        for (int j = 0; j < nk; ++j) {
          const int c = count[i * nk + j];
          const bool hit = pass == 0 ? (c > 0 && c < qb * kb) : (c == qb * kb);
          if (hit == (sel == 1)) want.push_back(j);
        }
      int want_n = 0;
      for (int j = 0; j < nk; ++j) {
        const int c = count[i * nk + j];
        want_n += pass == 0 ? (c > 0 && c < qb * kb) : (c == qb * kb);
      }
      const int got_n = pass == 0 ? num[i] : fnum[i];
      const int32_t* got = (pass == 0 ? idx.data() : fidx.data()) + i * nk;
      if (got_n != want_n) {
        std::printf("L=%d qb=%d kb=%d row %d %s: %d tiles, want %d\n", L, qb, kb, i, pass ? "full" : "partial", got_n, want_n);
        return false;
      }
      for (int j = 0; j < nk; ++j)
        if (got[j] != want[j]) {
          std::printf("L=%d row %d %s slot %d: %d, want %d\n", L, i, pass ? "full" : "partial", j, got[j], want[j]);
          return false;
        }
    }
  }
  return true;
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  const int blocks[] = {1, 2, 3, 4, 8, 16};
  int cases = 0;
  for (int iter = 0; iter < 600; ++iter) {
    const int L = std::uniform_int_distribution<int>(1, 80)(rng);
    Row r = random_row(rng, L);
    GistMaskFlags f{bool(iter & 1), bool(iter & 2), bool(iter & 4)};
    const int qb = blocks[rng() % 6], kb = blocks[rng() % 6];
    if (!check(r, L, qb, kb, f)) return 1;
    ++cases;
  }
  // A doc id split in two runs is rejected (the interval counting would be wrong).
  Row bad{{1, 1, 1}, {0, 0, 0}, {0, 1, 0}, {1 << 30, 1 << 30, 1 << 30}};
  int32_t n[1], i[1], fn[1], fi[1];
  if (thinkc::gist_block_mask_cpu(bad.role.data(), bad.seg.data(), bad.doc.data(), bad.expire.data(), 1, 3, 4, 4,
                                  GistMaskFlags{}, n, i, fn, fi).empty()) {
    std::printf("non-contiguous document accepted\n");
    return 1;
  }
  std::printf("ok: %d random rows\n", cases);
  return 0;
}
