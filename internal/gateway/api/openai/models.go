package openai

import (
	"net/http"
)

// Model is one entry of /v1/models.
type Model struct {
	// ID is the name consumers put in "model", e.g. "llama3.2:1b".
	ID string
	// Created is when the network first saw the model, in unix seconds.
	Created int64
	// OwnedBy is shown to consumers as "owned_by"; "idlegrid" when empty.
	OwnedBy string
}

// modelObject is OpenAI's model object.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newModelObject(m Model) modelObject {
	owner := m.OwnedBy
	if owner == "" {
		owner = "idlegrid"
	}
	return modelObject{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: owner}
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// WriteModelList writes the /v1/models response. The list is written in
// the given order and is never null, even when empty.
func WriteModelList(w http.ResponseWriter, models []Model) {
	list := modelList{Object: "list", Data: make([]modelObject, 0, len(models))}
	for _, m := range models {
		list.Data = append(list.Data, newModelObject(m))
	}
	out := newResponder(w)
	// A failed write means the consumer left; there is nobody to tell.
	_ = out.body(http.StatusOK, list)
}

// WriteModel writes the /v1/models/{id} response for one model.
func WriteModel(w http.ResponseWriter, m Model) {
	out := newResponder(w)
	_ = out.body(http.StatusOK, newModelObject(m))
}
