package verify

import (
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// PromptMix draws requests from a fixed mix of chat and completion prompts
// of varied length — questions, instructions, multi-turn chats, documents
// to summarise, code, story openings — assembled from hand-written
// templates by a hash of (Seed, index), so the same index always gives the
// same request and no external data is needed. Canaries drawn from it
// look like the traffic it also stands for.
type PromptMix struct {
	Model string
	Seed  uint64
	// SampledShare of Traffic requests sample (temperature 0.7 or 1, half
	// of them with top_p 0.9, all with a seed); the rest are greedy.
	SampledShare float64
	// StopShare of Traffic requests carry stop strings.
	StopShare float64
}

// DefaultPromptMix is the mix the benchmark uses: a third of traffic
// sampled, one request in ten with stop strings.
func DefaultPromptMix(model string) PromptMix {
	return PromptMix{Model: model, Seed: 1, SampledShare: 0.3, StopShare: 0.1}
}

// Traffic returns the i-th request of the mix as consumers send it.
func (m PromptMix) Traffic(i int) protocol.Request {
	r := m.rng(i, 1)
	req := m.base(i)
	if r.float() < m.SampledShare {
		t := []float64{0.7, 1}[r.intn(2)]
		req.Options.Temperature = &t
		if r.intn(2) == 0 {
			p := 0.9
			req.Options.TopP = &p
		}
		// A seed, so that a benchmark run repeats exactly.
		s := int64(r.next() >> 1)
		req.Options.Seed = &s
	}
	if r.float() < m.StopShare {
		req.Options.Stop = stopSets[r.intn(len(stopSets))]
	}
	return req
}

// Canary returns the i-th request of the mix as a canary: greedy (an
// explicit temperature 0, as many clients send) and without stop strings.
func (m PromptMix) Canary(i int) protocol.Request {
	req := m.base(i)
	zero := 0.0
	req.Options.Temperature = &zero
	return req
}

// Embed returns the i-th embed request of the mix: n texts (questions,
// instructions, documents, story openings) as an application embeds them
// for retrieval, each the last text of one of the mix's prompts.
func (m PromptMix) Embed(i, n int) protocol.Request {
	req := protocol.Request{Kind: protocol.KindEmbed, Model: m.Model}
	for k := range n {
		b := m.base(i*n + k)
		text := b.Prompt
		if len(b.Messages) > 0 {
			text = b.Messages[len(b.Messages)-1].Content
		}
		req.Input = append(req.Input, text)
	}
	return req
}

// base builds the i-th prompt with its token limit.
func (m PromptMix) base(i int) protocol.Request {
	r := m.rng(i, 0)
	req := protocol.Request{Model: m.Model}
	req.Options.MaxTokens = []int{32, 64, 128, 128, 256, 512}[r.intn(6)]
	switch k := r.intn(10); {
	case k < 6:
		req.Kind = protocol.KindChat
		if r.intn(3) > 0 {
			req.Messages = append(req.Messages, protocol.ChatMessage{Role: "system", Content: pick(r, systems)})
		}
		for range r.intn(3) { // earlier turns
			req.Messages = append(req.Messages,
				protocol.ChatMessage{Role: "user", Content: task(r)},
				protocol.ChatMessage{Role: "assistant", Content: pick(r, replies)})
		}
		req.Messages = append(req.Messages, protocol.ChatMessage{Role: "user", Content: task(r)})
	default:
		req.Kind = protocol.KindGenerate
		req.Prompt = completion(r)
		if r.intn(4) == 0 {
			req.System = pick(r, systems)
		}
	}
	return req
}

func (m PromptMix) rng(i, stream int) *mixRNG {
	r := mixRNG(mix(m.Seed ^ mix(uint64(i)*2+uint64(stream))))
	return &r
}

// mixRNG is a splitmix64 generator: deterministic everywhere.
type mixRNG uint64

func (r *mixRNG) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	return mix(uint64(*r))
}

func (r *mixRNG) intn(n int) int { return int(r.next() % uint64(max(n, 1))) }

func (r *mixRNG) float() float64 { return float64(r.next()>>11) / (1 << 53) }

func pick(r *mixRNG, xs []string) string { return xs[r.intn(len(xs))] }

// task is one user message.
func task(r *mixRNG) string {
	topic := pick(r, topics)
	switch r.intn(9) {
	case 0:
		return fmt.Sprintf("Explain %s to %s.", topic, pick(r, audiences))
	case 1:
		return fmt.Sprintf("What are the main pros and cons of %s?", topic)
	case 2:
		return fmt.Sprintf("Write a short %s about %s.", pick(r, forms), topic)
	case 3:
		return fmt.Sprintf("Summarize the following text in %d sentences:\n\n%s", 1+r.intn(4), document(r, topic, 4+r.intn(24)))
	case 4:
		return fmt.Sprintf("Give me %d ideas for %s. Keep each one short.", 3+r.intn(8), topic)
	case 5:
		return fmt.Sprintf("I feel %s about %s. What would you do in my place?", pick(r, moods), topic)
	case 6:
		return fmt.Sprintf("Find the bug in this function and explain the fix:\n\n```go\n%s\n```", pick(r, code))
	case 7:
		return fmt.Sprintf("Translate into %s: %q", pick(r, languages), sentence(r, topic))
	default:
		return question(r, topic)
	}
}

// question is a factual or topical question.
func question(r *mixRNG, topic string) string {
	if r.intn(3) == 0 {
		return pick(r, questions)
	}
	return strings.ReplaceAll(pick(r, topicQuestions), "{topic}", topic)
}

// completion is one prompt for a completion (generate) request.
func completion(r *mixRNG) string {
	topic := pick(r, topics)
	switch r.intn(5) {
	case 0:
		return fmt.Sprintf("Q: %s\nA:", question(r, topic))
	case 1:
		return fmt.Sprintf("The following is a list of %d facts about %s.\n1.", 3+r.intn(10), topic)
	case 2:
		return fmt.Sprintf("%s\n\nIn summary,", document(r, topic, 3+r.intn(30)))
	case 3:
		return fmt.Sprintf("// file: %s.go\n// %s\n%s\n", strings.ReplaceAll(topic, " ", "_"), pick(r, codeTasks), pick(r, code))
	default:
		return fmt.Sprintf("Once upon a time, %s %s decided to learn about %s.", pick(r, characters), pick(r, places), topic)
	}
}

// document is n sentences about topic.
func document(r *mixRNG, topic string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(" ")
			if r.intn(6) == 0 {
				b.WriteString("\n\n")
			}
		}
		b.WriteString(sentence(r, topic))
	}
	return b.String()
}

func sentence(r *mixRNG, topic string) string {
	s := pick(r, sentences)
	s = strings.ReplaceAll(s, "{topic}", topic)
	s = strings.ReplaceAll(s, "{who}", pick(r, characters))
	s = strings.ReplaceAll(s, "{n}", fmt.Sprint(2+r.intn(90)))
	return s
}

var stopSets = [][]string{{"."}, {"?", "!"}, {"\n"}, {";"}}

var topics = []string{
	"the water cycle", "public key cryptography", "baking sourdough bread", "preparing for a job interview",
	"the French revolution", "binary search", "keeping houseplants alive", "training for a marathon",
	"compound interest", "how vaccines work", "learning a second language", "container orchestration",
	"the history of jazz", "photosynthesis", "renting a first apartment", "electric cars",
	"writing unit tests", "the stock market", "climate change", "black holes", "remote work",
	"chess openings", "the Roman empire", "machine translation", "sleep hygiene", "saving for retirement",
	"the human immune system", "urban gardening", "database indexes", "volcanoes",
}

var audiences = []string{
	"a five-year-old", "a high school student", "a software engineer", "my grandmother",
	"a busy manager", "someone who has never heard of it",
}

var forms = []string{"poem", "story", "dialogue", "product description", "limerick", "news report", "letter"}

var moods = []string{"anxious", "excited", "confused", "overwhelmed", "curious", "stuck"}

var languages = []string{"French", "German", "Spanish", "Italian", "Portuguese", "Dutch"}

var characters = []string{
	"a curious fox", "an old lighthouse keeper", "a young programmer", "the mayor of a small town",
	"a retired teacher", "a robot", "two sisters", "a street musician",
}

var places = []string{"in a quiet village", "in a busy city", "on a small island", "in the mountains", "by the sea", "in a library"}

var codeTasks = []string{
	"Complete the next function in the same style.",
	"Write the tests for the function below.",
	"Add error handling to the function below.",
	"Document the function below.",
	"Rewrite the function below to be faster.",
}

var systems = []string{
	"You are a helpful assistant.",
	"You are a concise technical writer. Answer in plain English and avoid jargon.",
	"You are a friendly tutor. Explain step by step and check understanding at the end.",
	"You are an expert editor. Keep answers short.",
	"Answer as briefly as possible.",
	"You are a customer support agent for an online bookshop. Be polite and precise, and never invent order numbers.",
}

var replies = []string{
	"Sure, here is a short answer.",
	"Good question! In short, it depends on the details, but the main idea is simple.",
	"I'm not completely sure, but here is what I know.",
	"Here are a few points to consider: cost, time and risk.",
	"Of course. Let me know if you want more detail.",
}

var questions = []string{
	"What is the capital of Australia?",
	"How many bones are in the human body?",
	"Why is the sky blue?",
	"What is the difference between a list and a tuple in Python?",
	"How do I center a div in CSS?",
	"What does HTTP status code 418 mean?",
	"How long should I boil an egg?",
	"Who wrote Pride and Prejudice?",
	"What is a good name for a golden retriever?",
	"Can you recommend a book about habits?",
}

var topicQuestions = []string{
	"What is the most common misconception about {topic}?",
	"How would you explain {topic} in one paragraph?",
	"What changed about {topic} in the last ten years?",
	"Which book would you recommend to learn about {topic}?",
	"Is {topic} worth the effort for a beginner?",
	"What are three questions an expert on {topic} would ask me?",
}

var sentences = []string{
	"Many people find {topic} harder than it first appears.",
	"According to a recent survey, {n} percent of respondents had an opinion about {topic}.",
	"{who} once said that {topic} is mostly about patience.",
	"The basic idea behind {topic} fits in one sentence, but the details fill books.",
	"In practice, {topic} depends on a few simple rules and many exceptions.",
	"Critics argue that {topic} is overrated, while supporters point to {n} years of results.",
	"A common mistake with {topic} is to start without a plan.",
	"Experts disagree on how {topic} will change over the next {n} years.",
	"The first step is usually the hardest, and {topic} is no exception.",
	"{who} spent {n} days studying {topic} and wrote down everything.",
	"Nobody expected {topic} to become so popular so quickly.",
	"There are at least {n} ways to approach {topic}, each with its own trade-offs.",
}

var code = []string{
	"func sum(xs []int) int {\n\ttotal := 0\n\tfor i := 1; i < len(xs); i++ {\n\t\ttotal += xs[i]\n\t}\n\treturn total\n}",
	"func reverse(s string) string {\n\tb := []byte(s)\n\tfor i, j := 0, len(b); i < j; i, j = i+1, j-1 {\n\t\tb[i], b[j] = b[j], b[i]\n\t}\n\treturn string(b)\n}",
	"func max(a, b int) int {\n\tif a < b {\n\t\treturn a\n\t}\n\treturn b\n}",
	"func contains(xs []string, x string) bool {\n\tfor _, y := range xs {\n\t\tif y == x {\n\t\t\treturn false\n\t\t}\n\t}\n\treturn true\n}",
	"def mean(xs):\n    return sum(xs) / len(xs) - 1",
}
