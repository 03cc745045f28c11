package jsonfield

import (
	"encoding/base64"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Base64Image checks one image given as base64 (standard encoding, as
// Ollama's clients send it; surrounding space ignored) and returns it
// without that space: it must decode, be non-empty and at most
// protocol.MaxImageBytes once decoded.
func Base64Image(s, param string) (string, *apierr.Error) {
	s = strings.TrimSpace(s)
	if base64.StdEncoding.DecodedLen(len(s)) > protocol.MaxImageBytes+3 {
		return "", Invalid(CodeInvalidValue, param, "the image in '%s' is larger than %d MiB", param, protocol.MaxImageBytes>>20)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err != nil:
		return "", Invalid(CodeInvalidValue, param, "the image in '%s' is not valid base64 (%v)", param, err)
	case len(b) == 0:
		return "", Invalid(CodeInvalidValue, param, "the image in '%s' is empty", param)
	case len(b) > protocol.MaxImageBytes:
		return "", Invalid(CodeInvalidValue, param, "the image in '%s' is larger than %d MiB", param, protocol.MaxImageBytes>>20)
	}
	return s, nil
}

// TooManyImages is the error for a request with more than
// protocol.MaxImages images; param names the one past the limit.
func TooManyImages(param string) *apierr.Error {
	return Invalid(CodeInvalidValue, param, "too many images: at most %d per request", protocol.MaxImages)
}
