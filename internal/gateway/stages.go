package gateway

import "time"

// Stages is how long one served request spent in each stage of its way
// through the gateway; they add up to Total. Config.OnStages receives them.
type Stages struct {
	// Wait is admission to the dispatch of the job that finished: waiting
	// for a slot (and any earlier attempts on providers that failed).
	Wait time.Duration
	// Link is the dispatch to the provider's done arriving, less Agent:
	// both ways over the provider's connection, the time the link's
	// goroutines and the request's waited for a core included.
	Link time.Duration
	// Agent is the job's time at the provider as it reports it (calling
	// its model, signing the receipt); 0 when it reports none.
	Agent time.Duration
	// Receipt is done's arrival to the receipt stored: checking the
	// provider's receipt, countersigning, committing and syncing it.
	Receipt time.Duration
	// Write is the receipt stored to the answer's end written.
	Write time.Duration
	// Total is admission to the answer's end written.
	Total time.Duration
}

// stagesOf measures c, whose done arrived at done and whose receipt was
// stored at stored, as its answer ends now.
func stagesOf(c *call, done, stored time.Time, agent time.Duration) Stages {
	end := time.Now()
	agent = min(max(agent, 0), done.Sub(c.dispatched))
	return Stages{
		Wait: c.dispatched.Sub(c.admitted), Link: done.Sub(c.dispatched) - agent, Agent: agent,
		Receipt: stored.Sub(done), Write: end.Sub(stored), Total: end.Sub(c.admitted),
	}
}
