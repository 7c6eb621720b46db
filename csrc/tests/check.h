// The C++ tests' shared checks: expect() counts and prints failures (the first 20), report() ends a
// test's main with its exit status.
#pragma once

#include <cstdio>
#include <string>

namespace thinkc_test {

inline int failures = 0;

inline void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    if (failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

inline int report(const char* name) {
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}

}  // namespace thinkc_test
