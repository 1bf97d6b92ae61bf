"""The C++ prefix cache under AddressSanitizer and UndefinedBehaviorSanitizer.

A small driver (below) is compiled together with csrc/radix_cache.cpp with ``-fsanitize=address,undefined`` and
replays the operations of tests/generation/test_prefix_cache.py (`random_program`: the same scenarios as the hypothesis
state machine) with the cache's own invariant check after every operation. Its results must equal the Python
reference's, and the sanitizers must stay silent (any report aborts the driver). Skipped, with the reason, where
no C++ compiler or no sanitizer runtime is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.generation.test_prefix_cache import op_line, python_cache, random_program, result_line

CSRC = Path(__file__).resolve().parents[2] / "csrc"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

DRIVER = r"""
// Replays cache operations read from stdin (see tests/generation/test_prefix_cache.py) and prints one result line per
// operation, checking the cache's invariants after each.
#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "radix_cache.h"

using rftfast::RadixCache;

namespace {

std::unique_ptr<RadixCache> cache;
std::unordered_map<uint64_t, uint64_t> index_of;
std::vector<uint64_t> handles;

uint64_t node_index(uint64_t handle) {
  auto it = index_of.find(handle);
  if (it != index_of.end()) return it->second;
  index_of[handle] = handles.size();
  handles.push_back(handle);
  return handles.size() - 1;
}

uint64_t handle(uint64_t index) { return index < handles.size() ? handles[index] : (uint64_t{1} << 63) + index; }

template <typename T>
std::string join(const std::vector<T>& items) {
  if (items.empty()) return ".";
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + std::to_string(items[i]);
  return out;
}

template <typename T>
std::vector<T> read_list(std::istringstream& in) {
  std::size_t n = 0;
  in >> n;
  std::vector<T> items(n);
  for (auto& x : items) {
    long long v;
    in >> v;
    x = static_cast<T>(v);
  }
  return items;
}

std::string run(const std::string& kind, std::istringstream& in) {
  if (kind == "match") {
    auto tokens = read_list<int32_t>(in);
    auto r = cache->match(tokens.data(), tokens.size());
    return "match " + std::to_string(r.matched_len) + " " + join(r.block_ids) + " " +
           std::to_string(node_index(r.node));
  }
  if (kind == "insert") {
    auto tokens = read_list<int32_t>(in);
    auto blocks = read_list<int64_t>(in);
    auto r = cache->insert(tokens.data(), tokens.size(), blocks);
    std::string copy = r.has_copy ? std::to_string(r.copy.src_block) + "," + std::to_string(r.copy.dst_block) + "," +
                                        std::to_string(r.copy.n_tokens)
                                  : "-";
    return "insert " + std::to_string(node_index(r.node)) + " " + copy;
  }
  long long arg = 0;
  if (kind == "allocate") {
    in >> arg;
    return "allocate " + join(cache->allocate(arg));
  }
  if (kind == "release") {
    cache->release(read_list<int64_t>(in));
    return "release";
  }
  if (kind == "lock" || kind == "unlock") {
    unsigned long long index = 0;
    in >> index;
    if (kind == "lock") cache->lock(handle(index)); else cache->unlock(handle(index));
    return kind;
  }
  if (kind == "evict") {
    in >> arg;
    return "evict " + std::to_string(cache->evict(arg));
  }
  if (kind == "stats") {
    auto s = cache->stats();
    (void)cache->memory_bytes();
    std::ostringstream out;
    out << "stats " << s.lookups << " " << s.hit_tokens << " " << s.miss_tokens << " " << s.nodes << " "
        << s.cached_tokens << " " << s.free_blocks << " " << s.held_blocks << " " << s.cached_blocks << " "
        << s.evicted_blocks;
    return out.str();
  }
  throw std::logic_error("unknown operation " + kind);
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "cache") {
      long long num_blocks, block_size;
      in >> num_blocks >> block_size;
      cache = std::make_unique<RadixCache>(num_blocks, block_size);
      index_of.clear();
      handles.clear();
      std::cout << "cache\n";
      continue;
    }
    std::string result;
    try {
      result = run(kind, in);
    } catch (const std::out_of_range&) {
      result = "error IndexError";
    } catch (const std::invalid_argument&) {
      result = "error ValueError";
    } catch (const std::runtime_error&) {
      result = "error RuntimeError";
    }
    std::cout << result << "\n";
    try {
      cache->check_invariants();
    } catch (const std::exception& e) {
      std::cout << "INVARIANT " << e.what() << "\n";
      return 3;
    }
  }
  return 0;
}
"""


def _compiler() -> str:
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    pytest.skip("no C++ compiler on PATH")


@pytest.fixture(scope="module")
def sanitized_driver(tmp_path_factory) -> Path:
    compiler = _compiler()
    workdir = tmp_path_factory.mktemp("sanitizers")
    probe = workdir / "probe.cpp"
    probe.write_text("#include <vector>\nint main() { std::vector<int> v(3); return v[1]; }\n")
    probe_run = subprocess.run(
        [compiler, *SANITIZE, str(probe), "-o", str(workdir / "probe")], capture_output=True, text=True
    )
    if probe_run.returncode != 0:
        pytest.skip(
            f"{compiler} cannot link -fsanitize=address,undefined (libasan/libubsan missing?): "
            f"{probe_run.stderr.strip()[-300:]}"
        )
    probe_exec = subprocess.run([str(workdir / "probe")], capture_output=True, text=True)
    if probe_exec.returncode != 0:
        pytest.skip(f"sanitized programs do not run here: {probe_exec.stderr.strip()[-300:]}")
    driver = workdir / "replay.cpp"
    driver.write_text(DRIVER)
    binary = workdir / "replay"
    build = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O1",
            "-g",
            *SANITIZE,
            "-I",
            str(CSRC),
            str(driver),
            str(CSRC / "radix_cache.cpp"),
            "-o",
            str(binary),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    return binary


def _program_text(seeds, n_scenarios):
    lines, expected = [], []
    for seed in seeds:
        num_blocks, block_size, ops, results = random_program(seed, n_scenarios, python_cache)
        lines.append(f"cache {num_blocks} {block_size}")
        expected.append("cache")
        lines += map(op_line, ops)
        expected += map(result_line, results)
    return "\n".join(lines) + "\n", expected


def test_replay_under_address_and_undefined_behaviour_sanitizers(sanitized_driver):
    program, expected = _program_text(range(1000, 1060), 150)
    run = subprocess.run(
        [str(sanitized_driver)],
        input=program,
        capture_output=True,
        text=True,
        timeout=120,
        env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"},
    )
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-500:]
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr, run.stderr[-3000:]
    got = run.stdout.splitlines()
    assert len(got) == len(expected)
    for i, (line, want) in enumerate(zip(got, expected)):
        assert line == want, f"operation {i}: {program.splitlines()[i]!r}"
