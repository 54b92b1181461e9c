// Package probe sends a running API the inputs a hostile client or a
// careless one would: malformed and deeply nested JSON, wrong types, huge
// bodies and prompts, a body that stalls, wrong methods and content
// types, parameters out of range. Each is a Check with the answer a
// healthy server gives (a clear 4xx naming the problem), and the probe
// ends by checking that the server still serves. `tessera probe --url`
// runs it; it sends nothing that needs a particular model.
package probe
