package sim

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// CacheBlockTokens is the prefix cache's unit: prefixes are cached and
// matched in whole blocks of this many tokens, as vLLM's automatic prefix
// caching does with its KV-cache blocks.
const CacheBlockTokens = 16

// prefixCache is one model's simulated KV cache: the block hashes of recent
// token sequences, least recently used first out. A block's hash is the
// rolling hash of the whole sequence up to its end, so a block is only
// found when everything before it matches too.
type prefixCache struct {
	mu       sync.Mutex
	capacity int        // blocks
	lru      *list.List // of uint64, most recent at the front
	index    map[uint64]*list.Element
}

func newPrefixCache(tokens int) *prefixCache {
	return &prefixCache{capacity: max(tokens/CacheBlockTokens, 1), lru: list.New(), index: map[uint64]*list.Element{}}
}

// lookup returns how many leading blocks of a sequence are cached, and
// marks them used.
func (c *prefixCache) lookup(blocks []uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(blocks) && c.index[blocks[n]] != nil {
		n++
	}
	c.touch(blocks[:n])
	return n
}

// insert caches a sequence's blocks, evicting the least recently used.
func (c *prefixCache) insert(blocks []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touch(blocks)
}

// touch marks blocks used, adding missing ones. The last block is touched
// first, so a sequence's first block is its most recent: eviction then
// shortens a cached prefix from its end instead of cutting its head, which
// would make the rest unreachable.
func (c *prefixCache) touch(blocks []uint64) {
	for i := len(blocks) - 1; i >= 0; i-- {
		if e := c.index[blocks[i]]; e != nil {
			c.lru.MoveToFront(e)
			continue
		}
		c.index[blocks[i]] = c.lru.PushFront(blocks[i])
		for c.lru.Len() > c.capacity {
			old := c.lru.Back()
			delete(c.index, old.Value.(uint64))
			c.lru.Remove(old)
		}
	}
}

// CacheStats counts the prompts a Sim processed and the share its prefix
// caches served.
type CacheStats struct {
	// Requests is the number of generations started.
	Requests int64
	// PromptTokens counts their prompt tokens; CachedTokens those found in
	// the prefix cache (always 0 without one).
	PromptTokens, CachedTokens int64
	// Hits counts the generations that found at least one cached block.
	Hits int64
}

// HitRate is the share of prompt tokens served from the cache.
func (c CacheStats) HitRate() float64 {
	if c.PromptTokens == 0 {
		return 0
	}
	return float64(c.CachedTokens) / float64(c.PromptTokens)
}

type cacheCounters struct {
	requests, promptTokens, cachedTokens, hits atomic.Int64
}

func (c *cacheCounters) add(prompt, cached int) {
	c.requests.Add(1)
	c.promptTokens.Add(int64(prompt))
	c.cachedTokens.Add(int64(cached))
	if cached > 0 {
		c.hits.Add(1)
	}
}

// CacheStats returns the prompt and cache counts since the Sim was made.
func (s *Sim) CacheStats() CacheStats {
	return CacheStats{Requests: s.counts.requests.Load(), PromptTokens: s.counts.promptTokens.Load(),
		CachedTokens: s.counts.cachedTokens.Load(), Hits: s.counts.hits.Load()}
}

// prefill is the time to process uncached prompt tokens.
func (m *model) prefill(uncached int) time.Duration {
	if m.PromptTokensPerSecond <= 0 || uncached <= 0 {
		return 0
	}
	return time.Duration(float64(uncached) / m.PromptTokensPerSecond * float64(time.Second))
}
