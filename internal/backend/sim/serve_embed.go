package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// handleEmbed serves POST /api/embed as Ollama does: input is a string or
// an array of strings (an empty string or array gives no vectors), truncate
// defaults to true, and the vectors are normalized.
func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var in struct {
		Model      string          `json:"model"`
		Input      json.RawMessage `json:"input"`
		Truncate   *bool           `json:"truncate"`
		Dimensions int             `json:"dimensions"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Model == "" {
		writeError(w, http.StatusBadRequest, "model is required")
		return
	}
	var inputs []string
	var one string
	switch {
	case len(in.Input) == 0 || string(in.Input) == "null":
	case json.Unmarshal(in.Input, &one) == nil:
		if one != "" {
			inputs = []string{one}
		}
	case json.Unmarshal(in.Input, &inputs) == nil:
	default:
		writeError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	if _, ok := s.sim.lookup(in.Model); !ok {
		writeError(w, http.StatusNotFound, notFoundMessage(in.Model))
		return
	}
	out := map[string]any{"model": in.Model, "embeddings": [][]float32{}}
	if len(inputs) > 0 {
		res, err := s.sim.Embed(r.Context(), protocol.Request{Kind: protocol.KindEmbed, Model: in.Model, Input: inputs, Truncate: in.Truncate, Dimensions: in.Dimensions})
		switch {
		case errors.Is(err, backend.ErrBadRequest):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out["embeddings"] = res.Vectors
		out["prompt_eval_count"] = res.PromptTokens
	}
	out["total_duration"] = time.Since(start).Nanoseconds()
	writeJSON(w, http.StatusOK, out)
}
