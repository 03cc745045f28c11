// Package verify decides whether a provider served the model it claims, one
// audit at a time, with statistics that let an honest provider on other
// hardware pass and a cheating one fail:
//
//   - re-scoring (Judge): the reference model scores a provider's response
//     teacher-forced — one prefill pass over prompt and completion — and
//     per-token deficits (the reference's best log-probability minus that
//     of the provider's token), the probability of stopping where the
//     provider stopped and the text's token count decide;
//   - canaries without log-probabilities (Canary): the reference replays a
//     provider's greedy answer, continuing from the provider's own prefix
//     after each divergence, and the number of divergences is tested
//     against the rate hardware noise can explain.
//
// Verdicts feed the ledger's conviction rule (Convictions mirrors it), and
// Bench measures detection, conviction and cost against the provider
// variants in this package (cheaters and honest controls). The rules,
// thresholds and limits are in docs/verification.md.
package verify
