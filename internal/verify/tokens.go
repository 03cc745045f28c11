package verify

import (
	"unicode"
	"unicode/utf8"
)

// firstToken returns the length in bytes of the first token of text under
// a generic word splitter: a run of word runes with at most one space
// before it, or any other single rune. It is the simulator's tokenizer
// for every text the simulator generates (up to its cap on word length,
// which generated words never reach), and a word-level approximation for
// a model whose tokenizer the verifier cannot run; 0 for empty text.
func firstToken(text string) int {
	if text == "" {
		return 0
	}
	i := 0
	r, n := utf8.DecodeRuneInString(text)
	if r == ' ' && n < len(text) {
		if next, _ := utf8.DecodeRuneInString(text[n:]); isWordRune(next) {
			i = n
			r = next
		}
	}
	if !isWordRune(r) {
		return i + n
	}
	for i < len(text) {
		wr, wn := utf8.DecodeRuneInString(text[i:])
		if !isWordRune(wr) {
			break
		}
		i += wn
	}
	return i
}

// splitTokens splits text into firstToken's tokens.
func splitTokens(text string) []string {
	var out []string
	for text != "" {
		n := firstToken(text)
		out = append(out, text[:n])
		text = text[n:]
	}
	return out
}

func isWordRune(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsPunct(r) && !unicode.IsSymbol(r) &&
		!unicode.IsControl(r) && r != utf8.RuneError
}
