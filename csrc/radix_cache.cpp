// The radix prefix cache; the semantics (blocks, copy-on-write, eviction, errors) are documented in radix_cache.h.
#include "radix_cache.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "token_ops.h"

namespace rftfast {

namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

std::string str(std::size_t v) { return std::to_string(v); }
std::string str(int64_t v) { return std::to_string(v); }

// A std::set node: the element plus the red-black tree's colour and three links (libstdc++ layout).
constexpr std::size_t kSetNodeBytes = sizeof(std::pair<uint64_t, uint32_t>) + 4 * sizeof(void*);

}  // namespace

RadixCache::RadixCache(int64_t num_blocks, int64_t block_size) : num_blocks_(num_blocks), block_size_(block_size) {
  if (num_blocks < 1 || num_blocks > kMaxInt32) {
    throw std::invalid_argument("num_blocks: expected 1 to " + str(kMaxInt32) + ", got " + str(num_blocks));
  }
  if (block_size < 1 || block_size > kMaxInt32) {
    throw std::invalid_argument("block_size: expected 1 to " + str(kMaxInt32) + ", got " + str(block_size));
  }
  nodes_.emplace_back();
  nodes_[kRoot].alive = true;
  block_state_.assign(static_cast<std::size_t>(num_blocks), BlockState::kFree);
  seen_epoch_.assign(static_cast<std::size_t>(num_blocks), 0);
  // A stack whose top is block 0, so blocks are handed out in increasing order on a fresh cache.
  free_blocks_.reserve(static_cast<std::size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
  stats_.free_blocks = num_blocks;
}

// ------------------------------------------------------------------------------------------------------------
// Handles and input checks
// ------------------------------------------------------------------------------------------------------------

uint64_t RadixCache::handle_of(uint32_t slot) const {
  return static_cast<uint64_t>(nodes_[slot].generation) << 32 | slot;
}

uint32_t RadixCache::slot_of(uint64_t handle, const char* where) const {
  const uint64_t slot = handle & 0xffffffffu;
  const uint64_t generation = handle >> 32;
  if (slot >= nodes_.size() || !nodes_[slot].alive || nodes_[slot].generation != generation) {
    throw std::invalid_argument(std::string(where) + ": node " + std::to_string(handle) +
                                " is not in the cache (evicted, or never returned by match/insert)");
  }
  return static_cast<uint32_t>(slot);
}

int32_t RadixCache::checked_block(int64_t block, std::size_t index, const char* where) const {
  if (block < 0 || block >= num_blocks_) {
    throw std::out_of_range(std::string(where) + ": block_ids[" + str(index) + "] = " + str(block) +
                            " is out of range [0, " + str(num_blocks_) + ")");
  }
  return static_cast<int32_t>(block);
}

void RadixCache::check_blocks(const int64_t* block_ids, std::size_t n, const char* where) const {
  const int64_t num_blocks = num_blocks_;  // a local: block_ids could alias the member
  bool bad = false;
  for (std::size_t i = 0; i < n; ++i) bad |= block_ids[i] < 0 || block_ids[i] >= num_blocks;
  if (!bad) return;
  for (std::size_t i = 0; i < n; ++i) checked_block(block_ids[i], i, where);  // throws at the first bad one
}

void RadixCache::check_length(std::size_t n, const char* where) {
  // Positions are stored as uint32; int32 keeps every position and block index representable in Python's int32
  // arrays too.
  if (n > static_cast<std::size_t>(kMaxInt32)) {
    throw std::invalid_argument(std::string(where) + ": " + str(n) + " tokens is more than the cache can address");
  }
}

// ------------------------------------------------------------------------------------------------------------
// Walking the tree
// ------------------------------------------------------------------------------------------------------------

std::size_t RadixCache::child_index(const Node& node, int32_t token) const {
  const auto& children = node.children;
  auto it = std::lower_bound(children.begin(), children.end(), token,
                             [](const std::pair<int32_t, uint32_t>& c, int32_t t) { return c.first < t; });
  return (it != children.end() && it->first == token) ? static_cast<std::size_t>(it - children.begin())
                                                      : children.size();
}

void RadixCache::walk(const int32_t* tokens, std::size_t n) {
  path_.clear();
  matched_ = 0;
  partial_ = 0;
  uint32_t slot = kRoot;
  while (matched_ < n) {
    const Node& node = nodes_[slot];
    const std::size_t c = child_index(node, tokens[matched_]);
    if (c == node.children.size()) return;
    const uint32_t child = node.children[c].second;
    const std::vector<int32_t>& edge = nodes_[child].tokens;
    const std::size_t k = common_prefix_length(edge.data(), edge.size(), tokens + matched_, n - matched_);
    path_.push_back(child);
    matched_ += k;
    if (k < edge.size()) {
      partial_ = k;
      return;
    }
    slot = child;
  }
}

void RadixCache::collect_path_blocks(std::size_t matched) {
  path_blocks_.clear();
  for (uint32_t slot : path_) {
    const Node& node = nodes_[slot];
    path_blocks_.resize(node.first_block);  // a node's own copy replaces the block its parent ended in
    path_blocks_.insert(path_blocks_.end(), node.blocks.begin(), node.blocks.end());
  }
  path_blocks_.resize(ceil_div(matched, static_cast<std::size_t>(block_size_)));
}

void RadixCache::touch_path() {
  for (uint32_t slot : path_) {
    Node& node = nodes_[slot];
    if (node.lru != LruPlace::kNone) lru_remove(slot);  // ordered by the old time: out before restamping
    node.last_access = ++clock_;
    if (evictable(node, slot)) lru_add(slot);  // the newest time: the list's tail
  }
}

// ------------------------------------------------------------------------------------------------------------
// LRU bookkeeping
// ------------------------------------------------------------------------------------------------------------

bool RadixCache::evictable(const Node& node, uint32_t slot) const {
  return slot != kRoot && node.alive && node.children.empty() && node.lock_count == 0;
}

void RadixCache::refresh_lru(uint32_t slot) {
  const bool in = nodes_[slot].lru != LruPlace::kNone;
  const bool should = evictable(nodes_[slot], slot);
  if (in && !should) lru_remove(slot);
  if (should && !in) lru_add(slot);
}

bool RadixCache::lru_before(uint32_t a, uint32_t b) const {
  const uint64_t ta = nodes_[a].last_access, tb = nodes_[b].last_access;
  return ta < tb || (ta == tb && a < b);
}

void RadixCache::lru_link_after(uint32_t slot, uint32_t prev) {
  Node& node = nodes_[slot];
  const uint32_t next = prev == kNone ? lru_head_ : nodes_[prev].lru_next;
  node.lru_prev = prev;
  node.lru_next = next;
  (prev == kNone ? lru_head_ : nodes_[prev].lru_next) = slot;
  (next == kNone ? lru_tail_ : nodes_[next].lru_prev) = slot;
  node.lru = LruPlace::kList;
}

void RadixCache::lru_add(uint32_t slot) {
  constexpr int kProbe = 8;  // list neighbours looked at from each end before the set takes the leaf
  uint32_t prev = lru_tail_;  // back from the tail: a fresh stamp stops at once
  for (int i = 0; i < kProbe && prev != kNone && lru_before(slot, prev); ++i) prev = nodes_[prev].lru_prev;
  if (prev == kNone || !lru_before(slot, prev)) {
    lru_link_after(slot, prev);
    return;
  }
  uint32_t next = lru_head_;  // on from the head (the list is not empty: the tail is after slot)
  for (int i = 0; i < kProbe && lru_before(next, slot); ++i) next = nodes_[next].lru_next;
  if (!lru_before(next, slot)) {
    lru_link_after(slot, nodes_[next].lru_prev);
    return;
  }
  lru_set_.insert({nodes_[slot].last_access, slot});
  nodes_[slot].lru = LruPlace::kSet;
}

void RadixCache::lru_remove(uint32_t slot) {
  Node& node = nodes_[slot];
  if (node.lru == LruPlace::kList) {
    (node.lru_prev == kNone ? lru_head_ : nodes_[node.lru_prev].lru_next) = node.lru_next;
    (node.lru_next == kNone ? lru_tail_ : nodes_[node.lru_next].lru_prev) = node.lru_prev;
    node.lru_prev = node.lru_next = kNone;
  } else if (node.lru == LruPlace::kSet) {
    lru_set_.erase({node.last_access, slot});
  }
  node.lru = LruPlace::kNone;
}

uint32_t RadixCache::lru_oldest() const {
  if (lru_set_.empty()) return lru_head_;
  const uint32_t from_set = lru_set_.begin()->second;
  return lru_head_ != kNone && lru_before(lru_head_, from_set) ? lru_head_ : from_set;
}

// ------------------------------------------------------------------------------------------------------------
// match / insert
// ------------------------------------------------------------------------------------------------------------

MatchView RadixCache::match_view(const int32_t* tokens, std::size_t n) {
  check_length(n, "match");
  walk(tokens, n);
  collect_path_blocks(matched_);
  touch_path();
  ++stats_.lookups;
  stats_.hit_tokens += static_cast<int64_t>(matched_);
  stats_.miss_tokens += static_cast<int64_t>(n - matched_);
  MatchView view;
  view.matched_len = static_cast<int64_t>(matched_);
  view.blocks = path_blocks_.data();
  view.n_blocks = path_blocks_.size();
  view.node = handle_of(path_.empty() ? kRoot : path_.back());
  return view;
}

MatchResult RadixCache::match(const int32_t* tokens, std::size_t n) {
  const MatchView view = match_view(tokens, n);
  MatchResult result;
  result.matched_len = view.matched_len;
  result.block_ids.assign(view.blocks, view.blocks + view.n_blocks);
  result.node = view.node;
  return result;
}

InsertResult RadixCache::insert(const int32_t* tokens, std::size_t n, const int64_t* block_ids,
                                std::size_t n_block_ids) {
  if (n == 0) throw std::invalid_argument("insert: empty token sequence");
  check_length(n, "insert");
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  const std::size_t need = ceil_div(n, bs);
  if (n_block_ids != need) {
    throw std::invalid_argument("insert: " + str(n) + " tokens take " + str(need) + " block ids at block_size " +
                                str(bs) + ", got " + str(n_block_ids));
  }
  check_blocks(block_ids, need, "insert");

  walk(tokens, n);
  const std::size_t m = matched_;
  collect_path_blocks(m);
  const std::size_t cached_n = path_blocks_.size();  // ceil(m / bs)
  const std::size_t j = m / bs;                      // the first block index the new node would own
  const bool diverges_inside_block = m < n && m % bs != 0;

  // Check every block before changing anything.
  if (++epoch_ == 0) {  // the epoch wrapped: old marks could collide with new ones
    std::fill(seen_epoch_.begin(), seen_epoch_.end(), 0);
    epoch_ = 1;
  }
  // Indices [0, same) pass exactly the cached blocks (the usual layout: match's blocks, then fresh ones); of them
  // only the divergence block can be wrong.
  const std::size_t shared = std::min(need, cached_n);
  std::size_t same = 0;
  while (same < shared && block_ids[same] == path_blocks_[same]) ++same;
  for (std::size_t i = diverges_inside_block && j < same ? j : same; i < need; ++i) {
    const int32_t b = static_cast<int32_t>(block_ids[i]);
    if (i < cached_n && b == path_blocks_[i]) {
      if (diverges_inside_block && i == j) {
        throw std::invalid_argument(
            "insert: block_ids[" + str(i) + "] = " + str(int64_t{b}) + " is the cached block the sequence leaves at "
            "position " + str(m) + "; it is shared, so pass a freshly allocated block and apply the returned copy");
      }
      continue;
    }
    if (block_state_[b] != BlockState::kHeld) {
      throw std::invalid_argument("insert: block_ids[" + str(i) + "] = " + str(int64_t{b}) +
                                  (block_state_[b] == BlockState::kFree ? " is free" : " is cached elsewhere") +
                                  "; pass the cached block from match() or one from allocate()");
    }
    if (seen_epoch_[b] == epoch_) {
      throw std::invalid_argument("insert: block_ids[" + str(i) + "] = " + str(int64_t{b}) + " appears twice");
    }
    seen_epoch_[b] = epoch_;
  }

  // Held blocks for positions that are cached already are redundant: back to the free list.
  const std::size_t first_owned = m < n ? j : need;
  for (std::size_t i = same; i < first_owned; ++i) {
    const int32_t b = static_cast<int32_t>(block_ids[i]);
    if (b != path_blocks_[i]) free_block(b);
  }

  InsertResult result;
  if (m == n) {  // nothing new: n > 0, so the walk entered at least one node
    touch_path();
    result.node = handle_of(path_.back());
    return result;
  }

  uint32_t parent = kRoot;
  if (partial_ > 0) {
    parent = split(path_.back(), partial_);
    path_.back() = parent;
  } else if (!path_.empty()) {
    parent = path_.back();
  }

  const uint32_t leaf = new_node();
  {
    Node& node = nodes_[leaf];
    node.parent = parent;
    node.start = static_cast<uint32_t>(m);
    node.first_block = static_cast<uint32_t>(j);
    node.tokens.assign(tokens + m, tokens + n);
    node.blocks.reserve(need - j);
    for (std::size_t i = j; i < need; ++i) {
      const int32_t b = static_cast<int32_t>(block_ids[i]);
      block_state_[b] = BlockState::kCached;
      node.blocks.push_back(b);
    }
    stats_.held_blocks -= static_cast<int64_t>(need - j);
    stats_.cached_blocks += static_cast<int64_t>(need - j);
    stats_.cached_tokens += static_cast<int64_t>(n - m);
    ++stats_.nodes;
  }
  auto& siblings = nodes_[parent].children;
  const std::pair<int32_t, uint32_t> entry{tokens[m], leaf};
  siblings.insert(std::lower_bound(siblings.begin(), siblings.end(), entry,
                                   [](const auto& a, const auto& b) { return a.first < b.first; }),
                  entry);
  refresh_lru(parent);  // no longer a leaf
  path_.push_back(leaf);
  touch_path();  // stamps the new leaf and enters it in the LRU set

  result.node = handle_of(leaf);
  if (diverges_inside_block) {
    result.has_copy = true;
    result.copy = {path_blocks_[j], static_cast<int32_t>(block_ids[j]), static_cast<int32_t>(m - j * bs)};
  }
  return result;
}

uint32_t RadixCache::new_node() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& node = nodes_[slot];
  node.alive = true;
  node.lock_count = 0;
  node.lru = LruPlace::kNone;
  node.last_access = 0;
  return slot;
}

uint32_t RadixCache::split(uint32_t slot, std::size_t k) {
  const uint32_t upper = new_node();  // may reallocate nodes_: take references after it
  Node& lower = nodes_[slot];
  Node& top = nodes_[upper];
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  const std::size_t cut = lower.start + k;
  // The upper half owns the blocks up to the one holding position cut - 1; if cut falls inside a block, the
  // lower half shares that block (its first tokens are the upper half's).
  // (first_block <= ceil(start / bs) <= ceil(cut / bs), so the count is never negative.)
  const std::size_t upper_blocks = ceil_div(cut, bs) - lower.first_block;

  top.parent = lower.parent;
  top.start = lower.start;
  top.first_block = lower.first_block;
  top.last_access = lower.last_access;
  top.tokens.assign(lower.tokens.begin(), lower.tokens.begin() + static_cast<std::ptrdiff_t>(k));
  top.blocks.assign(lower.blocks.begin(), lower.blocks.begin() + static_cast<std::ptrdiff_t>(upper_blocks));
  top.children.assign(1, {lower.tokens[k], slot});

  // Fresh vectors rather than erase(): the lower half should not keep the whole edge's capacity.
  std::vector<int32_t>(lower.tokens.begin() + static_cast<std::ptrdiff_t>(k), lower.tokens.end()).swap(lower.tokens);
  std::vector<int32_t>(lower.blocks.begin() + static_cast<std::ptrdiff_t>(upper_blocks), lower.blocks.end())
      .swap(lower.blocks);
  lower.start = static_cast<uint32_t>(cut);
  lower.first_block += static_cast<uint32_t>(upper_blocks);
  lower.parent = upper;

  Node& grandparent = nodes_[top.parent];
  grandparent.children[child_index(grandparent, top.tokens[0])].second = upper;
  ++stats_.nodes;
  return upper;
}

// ------------------------------------------------------------------------------------------------------------
// Blocks: allocate, release, evict
// ------------------------------------------------------------------------------------------------------------

void RadixCache::free_block(int32_t block) {
  if (block_state_[block] == BlockState::kHeld) {
    --stats_.held_blocks;
  } else {
    --stats_.cached_blocks;
  }
  block_state_[block] = BlockState::kFree;
  free_blocks_.push_back(block);
  ++stats_.free_blocks;
}

void RadixCache::allocate(int64_t n, std::vector<int32_t>& out) {
  if (n < 0 || n > num_blocks_) {
    throw std::invalid_argument("allocate: asked for " + str(n) + " blocks; the cache has " + str(num_blocks_));
  }
  if (static_cast<int64_t>(free_blocks_.size()) < n) evict(n - static_cast<int64_t>(free_blocks_.size()));
  const int64_t available = static_cast<int64_t>(free_blocks_.size());
  if (available < n) {
    throw std::runtime_error("allocate: asked for " + str(n) + " blocks but only " + str(available) +
                             " can be freed; the other " + str(num_blocks_ - available) +
                             " are held by callers or locked in the cache");
  }
  out.resize(static_cast<std::size_t>(n));
  for (auto& b : out) {
    b = free_blocks_.back();
    free_blocks_.pop_back();
    block_state_[b] = BlockState::kHeld;
  }
  stats_.free_blocks -= n;
  stats_.held_blocks += n;
}

void RadixCache::release(const int64_t* block_ids, std::size_t n) {
  check_blocks(block_ids, n, "release");
  if (++epoch_ == 0) {
    std::fill(seen_epoch_.begin(), seen_epoch_.end(), 0);
    epoch_ = 1;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const int32_t b = static_cast<int32_t>(block_ids[i]);
    if (block_state_[b] != BlockState::kHeld) {
      throw std::invalid_argument("release: block_ids[" + str(i) + "] = " + str(int64_t{b}) +
                                  " is not held (only blocks from allocate() that were not inserted can be released)");
    }
    if (seen_epoch_[b] == epoch_) {
      throw std::invalid_argument("release: block_ids[" + str(i) + "] = " + str(int64_t{b}) + " appears twice");
    }
    seen_epoch_[b] = epoch_;
  }
  for (std::size_t i = 0; i < n; ++i) free_block(static_cast<int32_t>(block_ids[i]));
}

int64_t RadixCache::evict(int64_t n_blocks) {
  if (n_blocks < 0 || n_blocks > num_blocks_) {
    throw std::invalid_argument("evict: asked for " + str(n_blocks) + " blocks; the cache has " + str(num_blocks_));
  }
  int64_t freed = 0;
  for (uint32_t slot = lru_oldest(); freed < n_blocks && slot != kNone; slot = lru_oldest()) {
    freed += evict_leaf(slot);
  }
  return freed;
}

int64_t RadixCache::evict_leaf(uint32_t slot) {
  lru_remove(slot);
  Node& node = nodes_[slot];
  const int64_t freed = static_cast<int64_t>(node.blocks.size());
  for (int32_t b : node.blocks) free_block(b);
  stats_.evicted_blocks += freed;
  stats_.cached_tokens -= static_cast<int64_t>(node.tokens.size());
  --stats_.nodes;

  const uint32_t parent = node.parent;
  auto& siblings = nodes_[parent].children;
  siblings.erase(siblings.begin() + static_cast<std::ptrdiff_t>(child_index(nodes_[parent], node.tokens[0])));

  // Give the memory back and retire the handle: the slot's next node gets a new generation.
  std::vector<int32_t>().swap(node.tokens);
  std::vector<int32_t>().swap(node.blocks);
  std::vector<std::pair<int32_t, uint32_t>>().swap(node.children);
  node.alive = false;
  ++node.generation;
  free_slots_.push_back(slot);

  refresh_lru(parent);  // it may be a leaf now
  return freed;
}

// ------------------------------------------------------------------------------------------------------------
// Locks
// ------------------------------------------------------------------------------------------------------------

void RadixCache::lock(uint64_t handle) {
  const uint32_t slot = slot_of(handle, "lock");
  if (nodes_[slot].lock_count == std::numeric_limits<uint32_t>::max()) {
    throw std::invalid_argument("lock: node " + std::to_string(handle) + " is locked too many times");
  }
  ++nodes_[slot].lock_count;
  refresh_lru(slot);
}

void RadixCache::unlock(uint64_t handle) {
  const uint32_t slot = slot_of(handle, "unlock");
  if (nodes_[slot].lock_count == 0) {
    throw std::invalid_argument("unlock: node " + std::to_string(handle) + " is not locked");
  }
  --nodes_[slot].lock_count;
  refresh_lru(slot);
}

// ------------------------------------------------------------------------------------------------------------
// Statistics and checks
// ------------------------------------------------------------------------------------------------------------

CacheStats RadixCache::stats() const { return stats_; }

std::size_t RadixCache::memory_bytes() const {
  std::size_t bytes = sizeof(*this);
  bytes += nodes_.capacity() * sizeof(Node);
  for (const Node& node : nodes_) {
    bytes += node.tokens.capacity() * sizeof(int32_t);
    bytes += node.blocks.capacity() * sizeof(int32_t);
    bytes += node.children.capacity() * sizeof(std::pair<int32_t, uint32_t>);
  }
  bytes += free_slots_.capacity() * sizeof(uint32_t);
  bytes += block_state_.capacity() * sizeof(BlockState);
  bytes += free_blocks_.capacity() * sizeof(int32_t);
  bytes += seen_epoch_.capacity() * sizeof(uint32_t);
  bytes += lru_set_.size() * kSetNodeBytes;
  bytes += path_.capacity() * sizeof(uint32_t) + path_blocks_.capacity() * sizeof(int32_t);
  return bytes;
}

void RadixCache::check_invariants() const {
  auto fail = [](const std::string& what) { throw std::runtime_error("invariant violated: " + what); };
  const std::size_t bs = static_cast<std::size_t>(block_size_);
  std::vector<uint8_t> owned(static_cast<std::size_t>(num_blocks_), 0);
  int64_t nodes = 0, cached_tokens = 0, cached_blocks = 0, evictable_leaves = 0;
  std::vector<uint32_t> stack{kRoot};
  while (!stack.empty()) {
    const uint32_t slot = stack.back();
    stack.pop_back();
    const Node& node = nodes_[slot];
    if (!node.alive) fail("dead node " + str(std::size_t{slot}) + " is reachable");
    const std::size_t end = node.start + node.tokens.size();
    if (slot != kRoot) {
      const Node& parent = nodes_[node.parent];
      ++nodes;
      cached_tokens += static_cast<int64_t>(node.tokens.size());
      if (node.tokens.empty()) fail("empty edge");
      if (node.start != parent.start + parent.tokens.size()) fail("edge does not start where its parent ends");
      if (node.first_block != node.start / bs && node.first_block != ceil_div(node.start, bs)) fail("first_block");
      if (node.blocks.size() != ceil_div(end, bs) - node.first_block) fail("owned block count");
    }
    const bool in_lru = node.lru != LruPlace::kNone;
    if (in_lru != evictable(node, slot)) fail("LRU membership of node " + str(std::size_t{slot}));
    if (in_lru) ++evictable_leaves;
    if (node.lru == LruPlace::kSet && !lru_set_.count({node.last_access, slot})) fail("LRU key out of date");
    for (int32_t b : node.blocks) {
      if (b < 0 || b >= num_blocks_ || owned[b]++) fail("block " + str(int64_t{b}) + " owned twice or out of range");
      if (block_state_[b] != BlockState::kCached) fail("owned block not marked cached");
      ++cached_blocks;
    }
    for (std::size_t c = 0; c < node.children.size(); ++c) {
      const auto& [token, child] = node.children[c];
      if (c > 0 && node.children[c - 1].first >= token) fail("children not sorted");
      if (child >= nodes_.size() || nodes_[child].parent != slot || nodes_[child].tokens.empty() ||
          nodes_[child].tokens[0] != token) {
        fail("child table of node " + str(std::size_t{slot}));
      }
      stack.push_back(child);
    }
  }
  int64_t free_count = 0, held = 0;
  for (int64_t b = 0; b < num_blocks_; ++b) {
    if (block_state_[b] == BlockState::kFree) ++free_count;
    if (block_state_[b] == BlockState::kHeld) ++held;
    if (block_state_[b] == BlockState::kCached && !owned[b]) fail("cached block without an owner");
  }
  std::vector<uint8_t> on_free_list(static_cast<std::size_t>(num_blocks_), 0);
  for (int32_t b : free_blocks_) {
    if (block_state_[b] != BlockState::kFree || on_free_list[b]++) fail("free list");
  }
  if (free_count != static_cast<int64_t>(free_blocks_.size())) fail("free list size");
  if (free_count + held + cached_blocks != num_blocks_) fail("free + held + cached != num_blocks");
  if (stats_.free_blocks != free_count || stats_.held_blocks != held || stats_.cached_blocks != cached_blocks ||
      stats_.nodes != nodes || stats_.cached_tokens != cached_tokens) {
    fail("counters disagree with the structure");
  }
  if ((lru_head_ == kNone) != (lru_tail_ == kNone)) fail("LRU list ends");
  int64_t listed = 0;
  for (uint32_t slot = lru_head_, prev = kNone; slot != kNone; prev = slot, slot = nodes_[slot].lru_next, ++listed) {
    if (nodes_[slot].lru != LruPlace::kList || nodes_[slot].lru_prev != prev) fail("LRU list links");
    if (prev != kNone && !lru_before(prev, slot)) fail("LRU list out of order");
    if (nodes_[slot].lru_next == kNone && lru_tail_ != slot) fail("LRU list tail");
  }
  if (listed + static_cast<int64_t>(lru_set_.size()) != evictable_leaves) fail("LRU order holds non-evictable nodes");
}

}  // namespace rftfast
