package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// maxWordRunes caps one word token so that a long run without spaces (a
// URL, base64) still counts as many tokens, as it would for a real model.
const maxWordRunes = 16

// tokenize splits text into tokens: a word is a run of at most maxWordRunes
// letters, digits and other non-space, non-punctuation runes, with the one
// ASCII space before it attached; every other rune (punctuation, symbols,
// newlines, a space not followed by a word) is a token of its own. Invalid
// UTF-8 bytes are tokens of one byte.
//
// The tokens are substrings that concatenate back to text exactly, and every
// token the simulator generates (a word with its leading space, or one
// punctuation rune) re-tokenizes to itself when appended to any text. That
// is what makes continuation work: tokenize(P + text(T1..Tk)) is
// tokenize(P) followed by T1..Tk, so generating from it continues with Tk+1.
func tokenize(text string) []string {
	var toks []string
	for i := 0; i < len(text); {
		start := i
		r, n := utf8.DecodeRuneInString(text[i:])
		if r == ' ' && i+n < len(text) {
			if next, _ := utf8.DecodeRuneInString(text[i+n:]); isWordRune(next) {
				i += n // the space joins the word that follows
				r = next
			}
		}
		if !isWordRune(r) {
			i += n
			toks = append(toks, text[start:i])
			continue
		}
		for count := 0; i < len(text) && count < maxWordRunes; count++ {
			wr, wn := utf8.DecodeRuneInString(text[i:])
			if !isWordRune(wr) {
				break
			}
			i += wn
		}
		toks = append(toks, text[start:i])
	}
	return toks
}

// isWordRune reports whether r belongs inside a word token.
func isWordRune(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsPunct(r) && !unicode.IsSymbol(r) &&
		!unicode.IsControl(r) && r != utf8.RuneError
}

// render turns a request into the prompt text the model continues.
//
// Generate: System, a newline and Prompt when System is set, otherwise
// Prompt alone; Raw sends Prompt alone (there is no template to skip, but a
// raw request must not get a system prompt either). A Context (an earlier
// answer's, encodeContext) comes first.
//
// Chat: one line per message, "role: content\n" (the space after the colon
// only when content starts with a word: generated words carry their own
// leading space and punctuation has none), then
// "assistant:" to open the answer. A final assistant message is left open
// instead — no newline, no new "assistant:" — so the model continues it:
// sending back an answer's first k tokens as the last assistant message
// makes the simulator generate exactly the rest of that answer. With
// tools, a first line "tools: name …" lists them, and each tool call of a
// message follows its content as " name{arguments}".
func render(req protocol.Request) (string, error) {
	switch req.Kind {
	case protocol.KindGenerate:
		before, err := decodeContext(req.Context)
		if err != nil {
			return "", err
		}
		prompt := req.Prompt + imageTokens(req.Images)
		if req.System != "" && !req.Raw {
			return before + req.System + "\n" + prompt, nil
		}
		return before + prompt, nil
	case protocol.KindChat:
		var b strings.Builder
		if req.SendsTools() {
			b.WriteString("tools:")
			for _, t := range req.Tools {
				b.WriteString(" " + t.Function.Name)
			}
			b.WriteByte('\n')
		}
		last := len(req.Messages) - 1
		for i, m := range req.Messages {
			b.WriteString(m.Role)
			b.WriteByte(':')
			if r, _ := utf8.DecodeRuneInString(m.Content); isWordRune(r) {
				b.WriteByte(' ')
			}
			b.WriteString(m.Content)
			b.WriteString(imageTokens(m.Images))
			for _, tc := range m.ToolCalls {
				b.WriteString(" " + tc.Name + tc.Arguments)
			}
			if i == last && m.Role == "assistant" && len(m.ToolCalls) == 0 {
				return b.String(), nil
			}
			b.WriteByte('\n')
		}
		b.WriteString("assistant:")
		return b.String(), nil
	default:
		return "", errUnknownKind(req.Kind)
	}
}

// imageTokens is how a simulated vision model sees images: one word per
// image naming its content (the first 16 hex digits of the sha256 of its
// base64), so an answer depends on the images it was shown.
func imageTokens(images []string) string {
	var b strings.Builder
	for _, img := range images {
		sum := sha256.Sum256([]byte(img))
		b.WriteString(" image" + hex.EncodeToString(sum[:8]))
	}
	return b.String()
}
