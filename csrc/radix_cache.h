// A radix tree over int32 token ids whose nodes own KV blocks: the prefix cache of the generators.
//
// Blocks. The KV pool (a tensor owned by Python; this file knows nothing of torch) is cut into `num_blocks`
// blocks of `block_size` consecutive positions: block index i of a sequence holds its positions
// [i * block_size, (i + 1) * block_size). A cached sequence of L tokens is described by ceil(L / block_size)
// block ids, the last one possibly partial. Each block is in exactly one state:
//   free    on the free list, its contents meaningless;
//   held    handed to the caller by allocate(), not yet given back by insert() or release();
//   cached  owned by exactly one tree node.
// so free + held + cached = num_blocks at all times.
//
// Nodes. A node's edge holds the tokens of positions [start, end). It owns the blocks of indices
// [first_block, ceil(end / block_size)), where first_block is floor(start / block_size) if the node has its own
// copy of the block its edge begins in, and ceil(start / block_size) if it shares that block with its parent
// (only the lower half of a split edge does: the block still holds the split-off upper half's tokens, which are
// exactly the lower half's own history). The blocks of a path are the owned blocks laid down from the root,
// a deeper node's block replacing its ancestor's at the same index.
//
// Copy-on-write. Branching is token-exact. When a new sequence leaves the cached ones at a position m that is
// not a multiple of block_size, block j = m / block_size holds the cached branch's tokens after m, so the new
// branch cannot share it: the caller passes a fresh (held) block for index j, writes its own positions
// [m, ...) there, and insert() returns the copy {src_block, dst_block, n_tokens = m - j * block_size} of the
// shared positions [j * block_size, m) that the caller applies to its pool. The order of the two writes does
// not matter: they touch different positions of dst_block.
//
// Eviction. Only unlocked leaves are evicted, least recently used first (every match/insert stamps the nodes on
// its path with a fresh logical time; ties, which only a split's copied time can make, go to the lower slot).
// They are kept exactly in (last access, slot) order: a doubly linked list through the nodes, which takes a fresh
// stamp at its tail in O(1) (a touch always stamps the newest time), plus an ordered set for the rare leaf whose old
// time (a node unlocked, or a parent left a leaf by an eviction) lands where a short probe from either end of the
// list finds no place, O(log n). The oldest leaf is the list's head or the set's first. Evicting a leaf
// frees the blocks it owns and may make its parent an evictable leaf in turn. lock(node) pins a node (a
// reference count): a locked node is never evicted, and neither is any ancestor, because eviction only takes
// leaves. Nodes are not merged back after an eviction, so a handle stays valid until its own node is evicted.
//
// Handles are opaque 64-bit integers (slot | generation << 32): a handle of an evicted node is refused, even
// after its slot is reused. The root is handle 0.
//
// Errors throw std::invalid_argument (ValueError in Python), std::out_of_range (IndexError) for block ids out
// of range, and std::runtime_error (RuntimeError) when allocate() cannot find enough unlocked blocks. Every
// method checks all of its input before changing anything, so a failed call leaves the cache as it was
// (allocate() excepted: the blocks it evicted before finding too few stay evicted). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

namespace rftfast {

// Copy positions [0, n_tokens) of src_block into dst_block (see "Copy-on-write" above).
struct CopyOnWrite {
  int32_t src_block = -1;
  int32_t dst_block = -1;
  int32_t n_tokens = 0;
};

struct MatchResult {
  int64_t matched_len = 0;         // leading tokens found in the cache
  std::vector<int32_t> block_ids;  // ceil(matched_len / block_size) blocks holding them
  uint64_t node = 0;               // the node holding the last matched token (root if none): lock it to pin them
};

// What match_view() found: like MatchResult, but `blocks` points into the cache's own scratch, valid until the
// next call on the cache (the binding copies it straight into a Python list; no vector is made per call).
struct MatchView {
  int64_t matched_len = 0;
  const int32_t* blocks = nullptr;  // ceil(matched_len / block_size) of them
  std::size_t n_blocks = 0;
  uint64_t node = 0;
};

struct InsertResult {
  uint64_t node = 0;  // the node holding the last inserted token
  bool has_copy = false;
  CopyOnWrite copy;
};

struct CacheStats {
  int64_t lookups = 0;      // match() calls
  int64_t hit_tokens = 0;   // tokens match() found cached
  int64_t miss_tokens = 0;  // tokens match() did not find
  int64_t nodes = 0;        // tree nodes, the root excluded
  int64_t cached_tokens = 0;
  int64_t free_blocks = 0;
  int64_t held_blocks = 0;
  int64_t cached_blocks = 0;
  int64_t evicted_blocks = 0;
};

class RadixCache {
 public:
  RadixCache(int64_t num_blocks, int64_t block_size);

  // Longest cached prefix of tokens[0, n); stamps the nodes on its path as used.
  MatchResult match(const int32_t* tokens, std::size_t n);
  MatchView match_view(const int32_t* tokens, std::size_t n);

  // Cache tokens[0, n) with block_ids (ceil(n / block_size) of them). For indices whose positions are all
  // cached already, pass the cached block (from match) or a held one (given back to the free list). Every
  // other index takes a held block, which the new node then owns; the cached block at the divergence index
  // is refused (see "Copy-on-write").
  InsertResult insert(const int32_t* tokens, std::size_t n, const int64_t* block_ids, std::size_t n_block_ids);
  InsertResult insert(const int32_t* tokens, std::size_t n, const std::vector<int64_t>& block_ids) {
    return insert(tokens, n, block_ids.data(), block_ids.size());
  }

  // n blocks, now held by the caller; evicts LRU leaves if too few are free. The first form fills `out`.
  void allocate(int64_t n, std::vector<int32_t>& out);
  std::vector<int32_t> allocate(int64_t n) {
    std::vector<int32_t> out;
    allocate(n, out);
    return out;
  }
  // Give held blocks back unused.
  void release(const int64_t* block_ids, std::size_t n);
  void release(const std::vector<int64_t>& block_ids) { release(block_ids.data(), block_ids.size()); }

  void lock(uint64_t node);
  void unlock(uint64_t node);

  // Evict LRU unlocked leaves until at least n_blocks blocks were freed or none is left; returns blocks freed.
  int64_t evict(int64_t n_blocks);

  CacheStats stats() const;
  // Bytes of bookkeeping: node records, edge tokens, block lists, child tables, the LRU set, block states.
  std::size_t memory_bytes() const;
  // Walk the whole structure and throw std::runtime_error at the first broken invariant (tests only).
  void check_invariants() const;

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }

 private:
  enum class BlockState : uint8_t { kFree, kHeld, kCached };
  enum class LruPlace : uint8_t { kNone, kList, kSet };  // where an evictable leaf sits in the LRU order

  static constexpr uint32_t kRoot = 0;
  static constexpr uint32_t kNone = 0xffffffffu;  // no slot (ends of the LRU list)

  struct Node {
    std::vector<int32_t> tokens;                           // the edge: positions [start, start + size)
    std::vector<int32_t> blocks;                           // owned blocks, indices first_block, first_block + 1...
    std::vector<std::pair<int32_t, uint32_t>> children;    // (first token of the edge, slot), sorted by token
    uint64_t last_access = 0;
    uint32_t parent = 0;
    uint32_t start = 0;
    uint32_t first_block = 0;
    uint32_t lock_count = 0;
    uint32_t generation = 0;
    uint32_t lru_prev = kNone;  // neighbours in the LRU list (lru == LruPlace::kList)
    uint32_t lru_next = kNone;
    bool alive = false;
    LruPlace lru = LruPlace::kNone;
  };

  uint64_t handle_of(uint32_t slot) const;
  uint32_t slot_of(uint64_t handle, const char* where) const;
  int32_t checked_block(int64_t block, std::size_t index, const char* where) const;
  void check_blocks(const int64_t* block_ids, std::size_t n, const char* where) const;  // each in range
  static void check_length(std::size_t n, const char* where);

  // Follow tokens down the tree: path_ gets the nodes entered, matched_ the tokens matched, and partial_ is
  // the number of edge tokens matched on path_.back() when it was left mid-edge (0 when it ended at a node).
  void walk(const int32_t* tokens, std::size_t n);
  // path_blocks_ = the first ceil(matched / block_size) blocks of path_.
  void collect_path_blocks(std::size_t matched);
  void touch_path();

  uint32_t new_node();
  // Cut slot's edge after k tokens; the new upper half is returned, slot keeps the lower half (and its handle).
  uint32_t split(uint32_t slot, std::size_t k);
  int64_t evict_leaf(uint32_t slot);
  bool evictable(const Node& node, uint32_t slot) const;
  void refresh_lru(uint32_t slot);
  // The LRU order of the evictable leaves (see "Eviction").
  bool lru_before(uint32_t a, uint32_t b) const;  // (last access, slot) of a < that of b
  void lru_link_after(uint32_t slot, uint32_t prev);  // into the list after prev (kNone: at the head)
  void lru_add(uint32_t slot);
  void lru_remove(uint32_t slot);
  uint32_t lru_oldest() const;  // kNone if there is no evictable leaf
  std::size_t child_index(const Node& node, int32_t token) const;  // children.size() if absent
  void free_block(int32_t block);

  int64_t num_blocks_;
  int64_t block_size_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> free_slots_;
  std::vector<BlockState> block_state_;
  std::vector<int32_t> free_blocks_;  // a stack: allocate() pops from the back
  std::vector<uint32_t> seen_epoch_;  // per block: the insert() that last saw it, to refuse duplicates
  uint32_t epoch_ = 0;
  uint32_t lru_head_ = kNone;  // the LRU list: oldest first
  uint32_t lru_tail_ = kNone;
  std::set<std::pair<uint64_t, uint32_t>> lru_set_;  // evictable leaves that are not in the list, by (time, slot)
  uint64_t clock_ = 0;
  CacheStats stats_;

  // Scratch of walk() and collect_path_blocks(), kept to avoid an allocation per call.
  std::vector<uint32_t> path_;
  std::size_t matched_ = 0;
  std::size_t partial_ = 0;
  std::vector<int32_t> path_blocks_;
};

}  // namespace rftfast
