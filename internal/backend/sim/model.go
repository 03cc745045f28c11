package sim

import (
	"math"
	"slices"
	"sort"
	"strings"
)

// The simulated language model. Everything here is integer hashing and
// float64 arithmetic on values derived from it, with no library PRNG, so
// the same (weights, tokens, seed) gives the same tokens on every machine
// and Go version: verifiers compare a provider's output with their own run.

const (
	// numCandidates is how many tokens get real probability mass at each
	// position (EOS included); the rest of the vocabulary shares floorMass.
	numCandidates = 16
	// floorMass is the total probability of all non-candidate tokens. It
	// keeps every token's log-probability finite, so a verifier can score
	// any text, while text from different weights still scores around
	// log(floorMass/vocabulary size) ≈ -12.6 per token.
	floorMass = 0.01
	// logitScale spreads candidate logits; with 15 word candidates it gives
	// the greedy token about a third of the mass, like a small real model.
	logitScale = 5.0
	// numWords is the size of the pseudo-word vocabulary.
	numWords = 3000
	// eosIndex is the end-of-sequence token's index; its text is empty.
	eosIndex = 0
)

// punctuation tokens, one byte each, follow EOS in the vocabulary. No
// newline: the EOS hazard counts tokens since the last newline, and
// generated newlines would make answers run on.
const punctuation = ",.!?;:"

const firstWord = 1 + len(punctuation)

// vocab is the model's fixed vocabulary: EOS, punctuation, then words with
// their leading space. It is built once per Sim and never changes.
type vocab struct {
	texts []string
	index map[string]int
}

func newVocab() *vocab {
	onsets := []string{"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "th", "br", "tr", "st"}
	vowels := []string{"a", "e", "i", "o", "u"}
	var syl []string
	for _, o := range onsets {
		for _, v := range vowels {
			syl = append(syl, o+v)
		}
	}
	v := &vocab{texts: []string{""}, index: map[string]int{}}
	for i := range len(punctuation) {
		v.texts = append(v.texts, punctuation[i:i+1])
	}
	for _, s := range syl {
		v.texts = append(v.texts, " "+s)
	}
	// Two-syllable words in a scrambled but fixed order (7919 is coprime
	// with len(syl)², so j → j·7919 mod len(syl)² visits each pair once).
	pairs := len(syl) * len(syl)
	for j := 0; len(v.texts) < firstWord+numWords; j++ {
		k := (j*7919 + 13) % pairs
		v.texts = append(v.texts, " "+syl[k/len(syl)]+syl[k%len(syl)])
	}
	for i, t := range v.texts {
		if i != eosIndex {
			v.index[t] = i
		}
	}
	return v
}

// mix64 is the splitmix64 finalizer: a bijective, well-mixing hash step.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// splitmix is a tiny PRNG whose whole definition is these two lines, so it
// can never change under us the way a library generator's output might.
type splitmix uint64

func (s *splitmix) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	return mix64(uint64(*s))
}

// float returns a uniform value in [0, 1).
func (s *splitmix) float() float64 { return float64(s.next()>>11) / (1 << 53) }

// tokenID hashes a token's text (FNV-1a): prompt tokens and generated tokens
// with the same text get the same id, whether or not they are in the
// vocabulary.
func tokenID(tok string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(tok); i++ {
		h ^= uint64(tok[i])
		h *= 0x100000001b3
	}
	return h
}

// seqState summarises a token sequence: a rolling hash over its token ids
// (order-sensitive), its length and the tokens since its last newline. The
// next-token distribution depends on the sequence only through it.
type seqState struct {
	hash         uint64
	pos          int
	sinceNewline int
	afterPunct   bool // the last token is punctuation: ",;" reads badly
}

func newSeqState() seqState { return seqState{hash: 0x6a09e667f3bcc908} }

func (s seqState) push(tok string) seqState {
	s.hash = mix64(s.hash*0x9e3779b97f4a7c15 ^ tokenID(tok))
	s.pos++
	s.sinceNewline++
	if tok == "\n" {
		s.sinceNewline = 0
	}
	s.afterPunct = len(tok) == 1 && strings.Contains(punctuation, tok)
	return s
}

// eosHazard is the chance that EOS is the most likely token, by answer
// length so far (tokens since the last newline: the chat template puts
// "assistant:" on a fresh line). It rises from 1.2% to a cap of 9%: typical
// answers are tens of tokens, a few hundred happens but rarely.
func eosHazard(n int) float64 { return min(0.012+0.0012*float64(n), 0.09) }

// dist is the next-token distribution at one position: candidates with
// logits; everything else shares floorMass.
type dist struct {
	cand  [numCandidates]int
	logit [numCandidates]float64
	logZ  float64 // log of the sum of exp(logit)
}

// next computes the distribution after st under weights.
func (v *vocab) next(weights uint64, st seqState) dist {
	rng := splitmix(mix64(st.hash ^ mix64(weights^0x5bd1e9955bd1e995)))
	var d dist
	d.cand[0] = eosIndex
	hi, lo := math.Inf(-1), math.Inf(1)
	for i := 1; i < numCandidates; i++ {
		c := drawCandidate(&rng, st.afterPunct)
		for slices.Contains(d.cand[:i], c) {
			c = drawCandidate(&rng, st.afterPunct)
		}
		d.cand[i] = c
		u := rng.float()
		d.logit[i] = logitScale * u * u
		hi, lo = max(hi, d.logit[i]), min(lo, d.logit[i])
	}
	d.logit[0] = lo - 2
	if rng.float() < eosHazard(st.sinceNewline) {
		d.logit[0] = hi + 2
	}
	hi = max(hi, d.logit[0])
	var sum float64
	for _, l := range d.logit {
		sum += math.Exp(l - hi)
	}
	d.logZ = hi + math.Log(sum)
	return d
}

// drawCandidate draws a vocabulary index, punctuation about one time in
// eight unless the previous token was punctuation.
func drawCandidate(rng *splitmix, noPunct bool) int {
	r := rng.next()
	if r%8 == 0 && !noPunct {
		return 1 + int((r>>3)%uint64(len(punctuation)))
	}
	return firstWord + int((r>>3)%numWords)
}

// logprob is the model's log-probability of vocabulary entry idx (-1 for a
// token outside the vocabulary) under d.
func (v *vocab) logprob(d *dist, idx int) float64 {
	for i, c := range d.cand {
		if c == idx {
			return math.Log1p(-floorMass) + d.logit[i] - d.logZ
		}
	}
	return math.Log(floorMass / float64(len(v.texts)-numCandidates))
}

// sampling says how to pick from a dist.
type sampling struct {
	temperature float64 // ≤ 0: greedy
	topP        float64 // in (0, 1]
	seed        uint64
	ignoreEOS   bool
}

// choose picks a candidate slot of d. Greedy takes the highest logit (the
// lowest slot on ties). Otherwise it samples from the candidates' softmax at
// the temperature, cut to the top-p nucleus, with a PRNG seeded from the
// seed, the position and the context hash — so a continuation from the
// same tokens samples the same way. Like top-k in real servers, sampling
// never leaves the candidate set.
func (v *vocab) choose(d *dist, s sampling, weights uint64, st seqState) int {
	first := 0
	if s.ignoreEOS {
		first = 1
	}
	if s.temperature <= 0 {
		best := first
		for i := first + 1; i < numCandidates; i++ {
			if d.logit[i] > d.logit[best] {
				best = i
			}
		}
		return best
	}
	order := make([]int, 0, numCandidates)
	for i := first; i < numCandidates; i++ {
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool { return d.logit[order[a]] > d.logit[order[b]] })
	hi := d.logit[order[0]]
	w := make([]float64, len(order))
	var total float64
	for k, i := range order {
		w[k] = math.Exp((d.logit[i] - hi) / s.temperature)
		total += w[k]
	}
	if s.topP > 0 && s.topP < 1 {
		var cum float64
		for k := range w {
			cum += w[k]
			if cum >= s.topP*total {
				w, total = w[:k+1], cum
				break
			}
		}
	}
	rng := splitmix(mix64(s.seed ^ mix64(uint64(st.pos)^mix64(st.hash^weights))))
	u := rng.float() * total
	for k := range w {
		u -= w[k]
		if u < 0 {
			return order[k]
		}
	}
	return order[len(w)-1]
}

// top returns up to n candidate slots of d, most likely first, leaving out
// EOS (its text is empty; a client cannot show it as an alternative).
func (v *vocab) top(d *dist, n int) []int {
	order := make([]int, 0, numCandidates-1)
	for i := 1; i < numCandidates; i++ {
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool { return d.logit[order[a]] > d.logit[order[b]] })
	return order[:min(n, len(order))]
}
