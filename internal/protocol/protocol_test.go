package protocol

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

func seedKey(tb testing.TB, b byte) keys.PrivateKey {
	tb.Helper()
	k, err := keys.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func ptr[T any](v T) *T { return &v }

func testNonce() []byte {
	n := make([]byte, NonceSize)
	for i := range n {
		n[i] = byte(i)
	}
	return n
}

func testCapabilities() Capabilities {
	return Capabilities{
		Models: []Model{{
			Name: "llama3.2:1b", Digest: "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878",
			Quantization: "Q8_0", Family: "llama", ParameterSize: "1.2B", ContextLength: 131072,
			PricePromptPerMTok: 100_000, PriceCompletionPerMTok: 300_000, TokensPerSecond: 87.5,
		}},
		Slots:        4,
		Hardware:     Hardware{OS: "linux", Arch: "amd64", CPU: "EPYC", Cores: 16, MemoryBytes: 64 << 30, GPUs: []GPU{{Name: "RTX 4090", MemoryBytes: 24 << 30}}},
		AgentVersion: "idlegrid/0.1.0",
	}
}

func testTerms(tb testing.TB, id string) Terms {
	return Terms{
		ChainID: "idlegrid-dev-1", RequestID: id, Gateway: seedKey(tb, 2).Public(),
		Consumer: seedKey(tb, 3).Public().Address(), Model: "llama3.2:1b", ModelDigest: "sha256:baf6a787",
		PricePromptPerMTok: 200_000, PriceCompletionPerMTok: 600_000,
		RequestHash: receipt.Sum([]byte("request")), StartUnixMs: 1_717_171_717_000,
	}
}

func testJob(tb testing.TB) *Job {
	return &Job{
		ID: "req-1",
		Request: Request{
			Kind: KindChat, Model: "llama3.2:1b",
			Messages: []ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi\nthere \"you\" <b>&</b> 🦙"}},
			Options:  Options{MaxTokens: 64, Temperature: ptr(0.0), TopP: ptr(0.9), Seed: ptr(int64(-7)), Stop: []string{"\n\n"}, Logprobs: true, TopLogprobs: 2},
		},
		DeadlineUnixMs: 1_717_171_777_000,
		Terms:          testTerms(tb, "req-1"),
	}
}

func testChunk() *Chunk {
	return &Chunk{ID: "req-1", Seq: 3, Delta: "Hé\nllo", Tokens: 2, Logprobs: []TokenLogprob{
		{Token: "Hé", Logprob: -0.25, Top: []TopLogprob{{Token: "Hé", Logprob: -0.25}, {Token: "Ha", Logprob: -1.5e-7}}},
		{Token: "\nllo", Logprob: -0},
	}}
}

func testDone(tb testing.TB) *Done {
	return &Done{ID: "req-1", Chunks: 4, Usage: Usage{PromptTokens: 12, CompletionTokens: 5}, FinishReason: "stop",
		Timings: Timings{FirstTokenUs: 1500, TotalUs: 90_000}, EndUnixMs: 1_717_171_718_000, ReceiptSignature: seedKey(tb, 1).Sign([]byte("r"))}
}

// goodMessages is one valid message of every type, plus the limits.
func goodMessages(tb testing.TB) map[string]*Message {
	longID := strings.Repeat("i", MaxIDLen)
	manyModels := make([]Model, MaxModels)
	for i := range manyModels {
		manyModels[i] = Model{Name: "m", Digest: "d"}
	}
	job := testJob(tb)
	jobAtLimit := testJob(tb)
	jobAtLimit.ID, jobAtLimit.Terms.RequestID = longID, longID
	gen := testJob(tb)
	gen.Request = Request{Kind: KindGenerate, Model: "m", Prompt: "Once", System: "s", Raw: true}
	embed := testJob(tb)
	embed.Request = Request{Kind: KindEmbed, Model: "m", Input: []string{"a", "b é"}, Dimensions: 8, Truncate: ptr(false)}
	embedMax := testJob(tb)
	embedMax.Request = Request{Kind: KindEmbed, Model: "m", Input: make([]string, MaxEmbedInputs), Dimensions: MaxEmbeddingDims}
	return map[string]*Message{
		"job embed":           {Type: TypeJob, Job: embed},
		"job embed at limits": {Type: TypeJob, Job: embedMax},
		"chunk embedding":     {Type: TypeChunk, Chunk: &Chunk{ID: "j", Seq: 1, Embedding: []float32{0.5, -1e-30, math.MaxFloat32, -math.SmallestNonzeroFloat32, 0.1}}},
		"hello":               {Type: TypeHello, Hello: &Hello{Nonce: testNonce(), GatewayKey: seedKey(tb, 2).Public(), ChainID: "idlegrid-dev-1", ProtocolVersion: Version}},
		"hello max chain id":  {Type: TypeHello, Hello: &Hello{Nonce: testNonce(), ChainID: strings.Repeat("ł", receipt.MaxChainID/2)}},
		"auth":                {Type: TypeAuth, Auth: &Auth{ProviderKey: seedKey(tb, 1).Public(), Signature: seedKey(tb, 1).Sign([]byte("x")), ProtocolVersion: Version, Capabilities: testCapabilities()}},
		"auth max slots":      {Type: TypeAuth, Auth: &Auth{Capabilities: Capabilities{Slots: MaxSlots}}},
		"welcome":             {Type: TypeWelcome, Welcome: &Welcome{HeartbeatMs: 15_000}},
		"job":                 {Type: TypeJob, Job: job},
		"job generate":        {Type: TypeJob, Job: gen},
		"job id at limit":     {Type: TypeJob, Job: jobAtLimit},
		"cancel":              {Type: TypeCancel, Cancel: &Cancel{ID: "req-1"}},
		"cancel id at limit":  {Type: TypeCancel, Cancel: &Cancel{ID: longID}},
		"chunk":               {Type: TypeChunk, Chunk: testChunk()},
		"chunk empty delta":   {Type: TypeChunk, Chunk: &Chunk{ID: "j", Seq: math.MaxUint64}},
		"chunk checkpoint": {Type: TypeChunk, Chunk: &Chunk{ID: "req-1", Seq: 0, Delta: "Hi", Tokens: 1,
			Checkpoint: &Checkpoint{CompletionTokens: 1, EndUnixMs: 1_717_171_718_000, Signature: seedKey(tb, 1).Sign([]byte("r"))}}},
		"chunk checkpoint at limits": {Type: TypeChunk, Chunk: &Chunk{ID: "j", Seq: math.MaxUint64,
			Checkpoint: &Checkpoint{CompletionTokens: math.MaxUint64, EndUnixMs: math.MaxInt64}}},
		"done":                {Type: TypeDone, Done: testDone(tb)},
		"done length":         {Type: TypeDone, Done: &Done{ID: "j", FinishReason: "length"}},
		"done with context":   {Type: TypeDone, Done: &Done{ID: "j", FinishReason: "stop", Context: []int{0, 1, 32000}}},
		"error":               {Type: TypeError, Error: &JobError{ID: "req-1", Code: CodeBusy, Message: "all slots busy"}},
		"error at limits":     {Type: TypeError, Error: &JobError{ID: "j", Code: Code(strings.Repeat("c", 64)), Message: strings.Repeat("€", MaxMessageText/3)}},
		"error unknown code":  {Type: TypeError, Error: &JobError{ID: "j", Code: "future_code"}},
		"pause":               {Type: TypePause},
		"pause with reason":   {Type: TypePause, Pause: &Pause{Reason: "owner is gaming"}},
		"pause empty payload": {Type: TypePause, Pause: &Pause{}},
		"resume":              {Type: TypeResume},
		"capabilities":        {Type: TypeCapabilities, Capabilities: ptr(testCapabilities())},
		"capabilities limits": {Type: TypeCapabilities, Capabilities: &Capabilities{Models: manyModels, Slots: 1, AgentVersion: strings.Repeat("v", MaxMessageText)}},
		"capabilities name and digest at limits": {Type: TypeCapabilities, Capabilities: &Capabilities{Slots: 1, Models: []Model{
			{Name: strings.Repeat("n", MaxNameLen), Digest: strings.Repeat("d", receipt.MaxDigest)}}}},
		"ping": {Type: TypePing, Ping: &Ping{Seq: 7}},
		"pong": {Type: TypePong, Ping: &Ping{Seq: 7}},
	}
}

func TestValidateAccepts(t *testing.T) {
	for name, m := range goodMessages(t) {
		t.Run(name, func(t *testing.T) {
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// TestWireRoundTrip: every valid message survives Encode and Decode
// unchanged, and encodes to the same bytes again.
func TestWireRoundTrip(t *testing.T) {
	for name, m := range goodMessages(t) {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(nil, m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if bytes.Count(b, []byte{'\n'}) != 1 || b[len(b)-1] != '\n' {
				t.Fatalf("encoding is not one line: %q", b)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(m)): %v", err)
			}
			if !equalMessages(got, m) {
				t.Fatalf("round trip changed the message:\n got %s\nwant %s", b, mustEncode(t, got))
			}
			if again := mustEncode(t, got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n got %s\nwant %s", again, b)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	longID := strings.Repeat("i", MaxIDLen+1)
	badUTF8 := string([]byte{'a', 0xff, 'b'})
	modelsPlusOne := make([]Model, MaxModels+1)
	for i := range modelsPlusOne {
		modelsPlusOne[i] = Model{Name: "m", Digest: "d"}
	}
	caps := func(f func(*Capabilities)) *Capabilities {
		c := testCapabilities()
		f(&c)
		return &c
	}
	model := func(f func(*Model)) *Capabilities {
		return caps(func(c *Capabilities) { f(&c.Models[0]) })
	}
	job := func(f func(*Job)) *Job {
		j := testJob(t)
		f(j)
		return j
	}
	chunk := func(f func(*Chunk)) *Chunk {
		c := testChunk()
		f(c)
		return c
	}
	hello := func(f func(*Hello)) *Hello {
		h := &Hello{Nonce: testNonce(), ChainID: "c"}
		f(h)
		return h
	}
	tests := map[string]*Message{
		// Types and payloads.
		"empty type":                   {Ping: &Ping{}},
		"unknown type":                 {Type: "bogus", Ping: &Ping{}},
		"type in capitals":             {Type: "PING", Ping: &Ping{}},
		"very long unknown type":       {Type: Type(strings.Repeat("x", 10_000))},
		"hello without payload":        {Type: TypeHello},
		"auth without payload":         {Type: TypeAuth},
		"welcome without payload":      {Type: TypeWelcome},
		"job without payload":          {Type: TypeJob},
		"cancel without payload":       {Type: TypeCancel},
		"chunk without payload":        {Type: TypeChunk},
		"done without payload":         {Type: TypeDone},
		"error without payload":        {Type: TypeError},
		"capabilities without payload": {Type: TypeCapabilities},
		"ping without payload":         {Type: TypePing},
		"pong without payload":         {Type: TypePong},
		"payload of another type":      {Type: TypeChunk, Done: testDone(t)},
		"two payloads":                 {Type: TypeChunk, Chunk: testChunk(), Done: testDone(t)},
		"ping with a hello too":        {Type: TypePing, Ping: &Ping{}, Hello: hello(func(*Hello) {})},
		"pause with a ping":            {Type: TypePause, Ping: &Ping{}},
		"pause with pause and ping":    {Type: TypePause, Pause: &Pause{}, Ping: &Ping{}},
		"resume with a payload":        {Type: TypeResume, Pause: &Pause{}},
		"cancel with a job":            {Type: TypeCancel, Cancel: &Cancel{ID: "j"}, Job: testJob(t)},
		// Hello.
		"nonce missing":         {Type: TypeHello, Hello: hello(func(h *Hello) { h.Nonce = nil })},
		"nonce short":           {Type: TypeHello, Hello: hello(func(h *Hello) { h.Nonce = h.Nonce[:NonceSize-1] })},
		"nonce long":            {Type: TypeHello, Hello: hello(func(h *Hello) { h.Nonce = append(h.Nonce, 0) })},
		"hello empty chain":     {Type: TypeHello, Hello: hello(func(h *Hello) { h.ChainID = "" })},
		"hello long chain":      {Type: TypeHello, Hello: hello(func(h *Hello) { h.ChainID = strings.Repeat("c", receipt.MaxChainID+1) })},
		"hello chain not UTF-8": {Type: TypeHello, Hello: hello(func(h *Hello) { h.ChainID = badUTF8 })},
		// Capabilities, in auth and on their own.
		"auth slots 0":            {Type: TypeAuth, Auth: &Auth{Capabilities: *caps(func(c *Capabilities) { c.Slots = 0 })}},
		"auth slots over max":     {Type: TypeAuth, Auth: &Auth{Capabilities: *caps(func(c *Capabilities) { c.Slots = MaxSlots + 1 })}},
		"slots 0":                 {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.Slots = 0 })},
		"slots negative":          {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.Slots = -1 })},
		"slots over max":          {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.Slots = MaxSlots + 1 })},
		"too many models":         {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.Models = modelsPlusOne })},
		"agent version too long":  {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.AgentVersion = strings.Repeat("v", MaxMessageText+1) })},
		"agent version not UTF-8": {Type: TypeCapabilities, Capabilities: caps(func(c *Capabilities) { c.AgentVersion = badUTF8 })},
		"model without digest":    {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Digest = "" })},
		"model without name":      {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Name = "" })},
		"model name too long":     {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Name = strings.Repeat("n", MaxNameLen+1) })},
		"model digest too long":   {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Digest = strings.Repeat("d", receipt.MaxDigest+1) })},
		// 128 bytes of which one is invalid: JSON would deliver 130 bytes.
		"model digest not UTF-8": {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Digest = strings.Repeat("d", receipt.MaxDigest-1) + "\xff" })},
		"model name not UTF-8":   {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.Name = badUTF8 })},
		"negative tokens/s":      {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.TokensPerSecond = -1 })},
		"NaN tokens/s":           {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.TokensPerSecond = math.NaN() })},
		"infinite tokens/s":      {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.TokensPerSecond = math.Inf(1) })},
		"negative context":       {Type: TypeCapabilities, Capabilities: model(func(m *Model) { m.ContextLength = -1 })},
		// Welcome.
		"heartbeat 0":        {Type: TypeWelcome, Welcome: &Welcome{}},
		"heartbeat negative": {Type: TypeWelcome, Welcome: &Welcome{HeartbeatMs: -1}},
		// Job.
		"job id empty":               {Type: TypeJob, Job: job(func(j *Job) { j.ID, j.Terms.RequestID = "", "" })},
		"job id too long":            {Type: TypeJob, Job: job(func(j *Job) { j.ID, j.Terms.RequestID = longID, longID })},
		"job id not UTF-8":           {Type: TypeJob, Job: job(func(j *Job) { j.ID, j.Terms.RequestID = badUTF8, badUTF8 })},
		"terms name another request": {Type: TypeJob, Job: job(func(j *Job) { j.Terms.RequestID = "req-2" })},
		"terms without request id":   {Type: TypeJob, Job: job(func(j *Job) { j.Terms.RequestID = "" })},
		"job kind empty":             {Type: TypeJob, Job: job(func(j *Job) { j.Request.Kind = "" })},
		"job kind unknown":           {Type: TypeJob, Job: job(func(j *Job) { j.Request.Kind = "summarize" })},
		"embed without input":        {Type: TypeJob, Job: job(func(j *Job) { j.Request.Kind = KindEmbed })},
		"embed too many inputs":      {Type: TypeJob, Job: job(func(j *Job) { j.Request.Kind, j.Request.Input = KindEmbed, make([]string, MaxEmbedInputs+1) })},
		"embed negative dimensions":  {Type: TypeJob, Job: job(func(j *Job) { j.Request.Kind, j.Request.Input, j.Request.Dimensions = KindEmbed, []string{"a"}, -1 })},
		"embed too many dimensions": {Type: TypeJob, Job: job(func(j *Job) {
			j.Request.Kind, j.Request.Input, j.Request.Dimensions = KindEmbed, []string{"a"}, MaxEmbeddingDims+1
		})},
		"job without model":        {Type: TypeJob, Job: job(func(j *Job) { j.Request.Model = "" })},
		"chat with a context":      {Type: TypeJob, Job: job(func(j *Job) { j.Request.Context = []int{1} })},
		"chat with request images": {Type: TypeJob, Job: job(func(j *Job) { j.Request.Images = []string{"aGk="} })},
		"too many images": {Type: TypeJob, Job: job(func(j *Job) {
			j.Request.Messages[0].Images = make([]string, MaxImages)
			j.Request.Messages[1].Images = []string{"aGk="}
		})},
		"negative context token": {Type: TypeJob, Job: job(func(j *Job) {
			j.Request.Kind, j.Request.Messages, j.Request.Prompt, j.Request.Context = KindGenerate, nil, "p", []int{1, -1}
		})},
		"job negative max tokens": {Type: TypeJob, Job: job(func(j *Job) { j.Request.Options.MaxTokens = -1 })},
		"job NaN temperature":     {Type: TypeJob, Job: job(func(j *Job) { j.Request.Options.Temperature = ptr(math.NaN()) })},
		"job infinite top_p":      {Type: TypeJob, Job: job(func(j *Job) { j.Request.Options.TopP = ptr(math.Inf(-1)) })},
		// Cancel.
		"cancel id empty":     {Type: TypeCancel, Cancel: &Cancel{}},
		"cancel id too long":  {Type: TypeCancel, Cancel: &Cancel{ID: longID}},
		"cancel id not UTF-8": {Type: TypeCancel, Cancel: &Cancel{ID: badUTF8}},
		// Chunk.
		"chunk id empty":        {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.ID = "" })},
		"chunk id too long":     {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.ID = longID })},
		"chunk negative tokens": {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Tokens = -1 })},
		// A rune split across two chunks: the gateway would hash U+FFFD.
		"chunk delta splits a rune": {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Delta = "🦙"[:2] })},
		"chunk -Inf logprob":        {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Logprobs[1].Logprob = math.Inf(-1) })},
		"chunk NaN top logprob":     {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Logprobs[0].Top[1].Logprob = math.NaN() })},
		"embedding with text":       {Type: TypeChunk, Chunk: &Chunk{ID: "j", Delta: "x", Embedding: []float32{1}}},
		"embedding with tokens":     {Type: TypeChunk, Chunk: &Chunk{ID: "j", Tokens: 1, Embedding: []float32{1}}},
		"embedding with checkpoint": {Type: TypeChunk, Chunk: &Chunk{ID: "j", Embedding: []float32{1}, Checkpoint: &Checkpoint{CompletionTokens: 1, EndUnixMs: 1}}},
		"embedding NaN":             {Type: TypeChunk, Chunk: &Chunk{ID: "j", Embedding: []float32{float32(math.NaN())}}},
		"embedding infinite":        {Type: TypeChunk, Chunk: &Chunk{ID: "j", Embedding: []float32{float32(math.Inf(1))}}},
		"embedding too long":        {Type: TypeChunk, Chunk: &Chunk{ID: "j", Embedding: make([]float32, MaxEmbeddingDims+1)}},
		"checkpoint of 0 tokens":    {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Checkpoint = &Checkpoint{EndUnixMs: 1} })},
		"checkpoint without time":   {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Checkpoint = &Checkpoint{CompletionTokens: 1} })},
		"checkpoint before 1970":    {Type: TypeChunk, Chunk: chunk(func(c *Chunk) { c.Checkpoint = &Checkpoint{CompletionTokens: 1, EndUnixMs: -1} })},
		// Done.
		"done id empty":         {Type: TypeDone, Done: &Done{FinishReason: "stop"}},
		"done context negative": {Type: TypeDone, Done: &Done{ID: "j", FinishReason: "stop", Context: []int{-3}}},
		"done id too long":      {Type: TypeDone, Done: &Done{ID: longID, FinishReason: "stop"}},
		"done no finish":        {Type: TypeDone, Done: &Done{ID: "j"}},
		"done finish STOP":      {Type: TypeDone, Done: &Done{ID: "j", FinishReason: "STOP"}},
		"done finish error":     {Type: TypeDone, Done: &Done{ID: "j", FinishReason: "error"}},
		// Error.
		"error without code":         {Type: TypeError, Error: &JobError{ID: "j", Message: "m"}},
		"error id empty":             {Type: TypeError, Error: &JobError{Code: CodeBusy}},
		"error id too long":          {Type: TypeError, Error: &JobError{ID: longID, Code: CodeBusy}},
		"error code too long":        {Type: TypeError, Error: &JobError{ID: "j", Code: Code(strings.Repeat("c", 65))}},
		"error message too long":     {Type: TypeError, Error: &JobError{ID: "j", Code: CodeBackend, Message: strings.Repeat("m", MaxMessageText+1)}},
		"error message cut mid-rune": {Type: TypeError, Error: &JobError{ID: "j", Code: CodeBackend, Message: strings.Repeat("é", MaxMessageText/2)[:MaxMessageText-1]}},
		"error code not UTF-8":       {Type: TypeError, Error: &JobError{ID: "j", Code: Code(badUTF8)}},
		// Pause.
		"pause reason too long":  {Type: TypePause, Pause: &Pause{Reason: strings.Repeat("r", MaxMessageText+1)}},
		"pause reason not UTF-8": {Type: TypePause, Pause: &Pause{Reason: badUTF8}},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid message")
			}
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error message is %d bytes: a hostile field is echoed whole", len(err.Error()))
			}
			// An invalid message never crosses the wire unchanged: either it
			// cannot be encoded, or the receiver rejects it, or (invalid
			// UTF-8) JSON altered it on the way.
			b, err := Encode(nil, m)
			if err != nil {
				return
			}
			if got, err := Decode(b); err == nil && equalMessages(got, m) {
				t.Fatalf("invalid message decoded unchanged from %s", b)
			}
		})
	}
}

func TestDecodeRejectsBadJSON(t *testing.T) {
	for _, in := range []string{
		``, `{`, `null`, `[]`, `"ping"`, `{}`, `{"type":"ping"}`,
		`{"type":"resume"} {"type":"resume"}`,
		`{"type":"ping","ping":{"seq":-1}}`,
		`{"type":"ping","ping":{"seq":1.5}}`,
		`{"type":"chunk","chunk":{"id":"j","tokens":"2"}}`,
		`{"type":"hello","hello":{"nonce":"not base64!","chain_id":"c"}}`,
		`{"type":"auth","auth":{"provider_key":"00","capabilities":{"slots":1}}}`,
		`{"type":"done","done":{"id":"j","finish_reason":"stop","receipt_signature":"` + strings.Repeat("0", 127) + `"}}`,
		`{"type":"chunk","chunk":{"id":"j","checkpoint":{"completion_tokens":1,"end_unix_ms":1,"signature":"` + strings.Repeat("0", 126) + `"}}}`,
		`{"type":"chunk","chunk":{"id":"j","checkpoint":{"completion_tokens":-1,"end_unix_ms":1}}}`,
		`{"type":"chunk","chunk":{"id":"j","checkpoint":{"completion_tokens":18446744073709551616,"end_unix_ms":1}}}`,
		`{"type":"chunk","chunk":{"id":"j","checkpoint":"yes"}}`,
		`{"type":"job","job":{"id":"j","terms":{"request_id":"j","request_hash":"zz"}}}`,
		`{"type":"welcome","welcome":{"heartbeat_ms":1e3}}`,
	} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("Decode(%s): %v, want ErrProtocol", in, err)
		}
	}
}

func mustEncode(tb testing.TB, m *Message) []byte {
	tb.Helper()
	b, err := Encode(nil, m)
	if err != nil {
		tb.Fatalf("Encode: %v", err)
	}
	return b
}

// equalMessages compares messages as the wire sees them: JSON does not tell
// an empty slice from a missing one (omitempty), so both become nil first.
func equalMessages(a, b *Message) bool {
	if a == nil || b == nil {
		return a == b
	}
	a, b = cloneNormalized(a), cloneNormalized(b)
	return reflect.DeepEqual(a, b)
}

// cloneNormalized deep-copies m (through a JSON-independent reflect walk)
// with every empty slice set to nil.
func cloneNormalized(m *Message) *Message {
	v := deepCopy(reflect.ValueOf(m))
	return v.Interface().(*Message)
}

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(deepCopy(v.Elem()))
		return p
	case reflect.Struct:
		s := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			s.Field(i).Set(deepCopy(v.Field(i)))
		}
		return s
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			s.Index(i).Set(deepCopy(v.Index(i)))
		}
		return s
	case reflect.Map, reflect.Interface, reflect.Chan, reflect.Func:
		panic("deepCopy: unexpected " + v.Kind().String() + " in a protocol message")
	default:
		return v
	}
}

func TestAuthBytes(t *testing.T) {
	gw := seedKey(t, 2).Public()
	other := seedKey(t, 4).Public()
	n := testNonce()
	// The gateway key is fixed-size, so a shifted boundary moves bytes
	// between nonce, key and chain id; the length prefixes must tell apart
	// inputs whose plain concatenation is the same.
	var shiftedGW keys.PublicKey
	copy(shiftedGW[:], append(gw[1:], 'i'))
	cases := []struct {
		name  string
		nonce []byte
		gw    keys.PublicKey
		chain string
	}{
		{"base", n, gw, "idlegrid-dev-1"},
		{"other nonce", append(bytes.Clone(n[:31]), 0xff), gw, "idlegrid-dev-1"},
		{"other gateway", n, other, "idlegrid-dev-1"},
		{"other chain", n, gw, "idlegrid-dev-2"},
		{"nonce||gw boundary shifted", append(bytes.Clone(n), gw[0]), shiftedGW, "dlegrid-dev-1"},
		{"short nonce", n[:31], gw, "idlegrid-dev-1"},
		{"empty nonce", nil, gw, "idlegrid-dev-1"},
		{"empty chain", n, gw, ""},
		{"chain moved into nonce", append(bytes.Clone(n), "idlegrid-dev-1"...), gw, ""},
		{"zero gateway", n, keys.PublicKey{}, "idlegrid-dev-1"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		b := string(AuthBytes(c.nonce, c.gw, c.chain))
		if prev, ok := seen[b]; ok {
			t.Errorf("AuthBytes of %q and %q are equal", c.name, prev)
		}
		seen[b] = c.name
	}
	// Without length prefixes these two would be the same bytes.
	plain := func(nonce []byte, g keys.PublicKey, chain string) string {
		return string(nonce) + string(g[:]) + chain
	}
	if plain(cases[0].nonce, cases[0].gw, cases[0].chain) != plain(cases[4].nonce, cases[4].gw, cases[4].chain) {
		t.Fatal("test setup: the shifted case does not collide without prefixes")
	}
	// Pinned bytes: the browser provider computes these in JavaScript, so a
	// change is a protocol break (it needs a new tag and Version).
	const golden = "69646c65677269642f70726f76696465722d617574682f76310a" +
		"00000020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
		"000000208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394" +
		"0000000e69646c65677269642d6465762d31"
	if got := hexString(AuthBytes(n, gw, "idlegrid-dev-1")); got != golden {
		t.Errorf("AuthBytes changed:\n got %s\nwant %s", got, golden)
	}
	// A signature over one handshake does not answer another.
	k := seedKey(t, 1)
	sig := k.Sign(AuthBytes(n, gw, "idlegrid-dev-1"))
	if !k.Public().Verify(AuthBytes(n, gw, "idlegrid-dev-1"), sig) {
		t.Fatal("auth signature does not verify")
	}
	if k.Public().Verify(AuthBytes(n, other, "idlegrid-dev-1"), sig) {
		t.Fatal("auth signature for one gateway verifies for another")
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, digits[c>>4], digits[c&15])
	}
	return string(s)
}

func TestTermsReceipt(t *testing.T) {
	terms := testTerms(t, "req-1")
	prov := seedKey(t, 1)
	resp := receipt.Sum([]byte("Hello!"))
	for _, u := range []Usage{{0, 0}, {12, 5}, {1_000_000, 3}, {math.MaxUint32, math.MaxUint32}} {
		r, err := terms.Receipt(prov.Public(), u, resp, terms.StartUnixMs+1234)
		if err != nil {
			t.Fatalf("usage %+v: %v", u, err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("usage %+v: receipt does not validate: %v", u, err)
		}
		want, err := receipt.ComputeAmount(u.PromptTokens, u.CompletionTokens, terms.PricePromptPerMTok, terms.PriceCompletionPerMTok)
		if err != nil || r.Amount != want {
			t.Fatalf("usage %+v: amount %d, ComputeAmount gives %d (%v)", u, r.Amount, want, err)
		}
		if r.PromptTokens != u.PromptTokens || r.CompletionTokens != u.CompletionTokens || r.Provider != prov.Public() ||
			r.ResponseHash != resp || r.EndUnixMs != terms.StartUnixMs+1234 || r.Version != receipt.Version {
			t.Fatalf("usage %+v: receipt %+v does not carry the inputs", u, r)
		}
		// Every Terms field lands in the receipt field of the same name,
		// so the gateway and the provider cannot build different receipts
		// from the same job.
		rv, tv := reflect.ValueOf(r), reflect.ValueOf(terms)
		for i := range tv.NumField() {
			name := tv.Type().Field(i).Name
			f := rv.FieldByName(name)
			if !f.IsValid() {
				t.Fatalf("receipt has no field %s for Terms.%s", name, name)
			}
			if !reflect.DeepEqual(f.Interface(), tv.Field(i).Interface()) {
				t.Errorf("receipt %s = %v, terms say %v", name, f.Interface(), tv.Field(i).Interface())
			}
		}
		sig := receipt.SignProvider(prov, &r)
		again, _ := terms.Receipt(prov.Public(), u, resp, terms.StartUnixMs+1234)
		if err := receipt.VerifyProvider(&again, sig); err != nil {
			t.Fatalf("a receipt rebuilt from the same inputs does not verify: %v", err)
		}
	}
}

func TestTermsReceiptOverflow(t *testing.T) {
	terms := testTerms(t, "req-1")
	terms.PricePromptPerMTok, terms.PriceCompletionPerMTok = math.MaxUint64, math.MaxUint64
	for _, u := range []Usage{{1_000_001, 0}, {0, math.MaxUint64}, {1_000_000, 1_000_000}} {
		if _, err := terms.Receipt(seedKey(t, 1).Public(), u, receipt.Hash{}, terms.StartUnixMs); !errors.Is(err, money.ErrOverflow) {
			t.Errorf("usage %+v at max prices: %v, want ErrOverflow", u, err)
		}
	}
}

// TestCheckpointReceipt: a checkpoint signs the job's receipt with no
// prompt tokens and its own completion tokens and end time, so a gateway
// that rebuilds it from the terms and the hash of what it relayed verifies
// the signature, and one that rebuilds anything else does not.
func TestCheckpointReceipt(t *testing.T) {
	terms := testTerms(t, "req-1")
	prov := seedKey(t, 1)
	sent := receipt.Sum([]byte("Hello, wor"))
	cp := &Checkpoint{CompletionTokens: 4, EndUnixMs: terms.StartUnixMs + 250}
	r, err := terms.CheckpointReceipt(prov.Public(), cp, sent)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := terms.Receipt(prov.Public(), Usage{CompletionTokens: 4}, sent, terms.StartUnixMs+250)
	if r != want || r.PromptTokens != 0 || r.RequestID != "req-1" {
		t.Fatalf("checkpoint receipt %+v, want %+v", r, want)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	cp.Signature = receipt.SignProvider(prov, &r)
	tests := []struct {
		name  string
		cp    Checkpoint
		hash  receipt.Hash
		valid bool
	}{
		{"as signed", *cp, sent, true},
		{"more tokens", Checkpoint{CompletionTokens: 5, EndUnixMs: cp.EndUnixMs, Signature: cp.Signature}, sent, false},
		{"other end time", Checkpoint{CompletionTokens: 4, EndUnixMs: cp.EndUnixMs + 1, Signature: cp.Signature}, sent, false},
		{"other text", *cp, receipt.Sum([]byte("Hello, world")), false},
	}
	for _, tt := range tests {
		r, err := terms.CheckpointReceipt(prov.Public(), &tt.cp, tt.hash)
		if err != nil {
			t.Fatal(err)
		}
		if err := receipt.VerifyProvider(&r, tt.cp.Signature); (err == nil) != tt.valid {
			t.Errorf("%s: verify %v, want valid %v", tt.name, err, tt.valid)
		}
	}
}

func TestChunkTokenCount(t *testing.T) {
	for _, tt := range []struct {
		c    Chunk
		want uint64
	}{
		{Chunk{}, 0},
		{Chunk{Delta: "a"}, 1},
		{Chunk{Delta: "abc", Tokens: 3}, 3},
		{Chunk{Tokens: 2}, 2}, // tokens held back for a split rune, or end markers
	} {
		if got := tt.c.TokenCount(); got != tt.want {
			t.Errorf("%+v: %d, want %d", tt.c, got, tt.want)
		}
	}
}

func TestSupported(t *testing.T) {
	for v, want := range map[int]bool{0: false, 1: true, Version: true, Version + 1: false, -1: false} {
		if Supported(v) != want {
			t.Errorf("Supported(%d) = %v", v, !want)
		}
	}
}
