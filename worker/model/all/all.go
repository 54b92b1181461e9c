// Package all registers every architecture Tessera serves; import it for
// its side effects.
package all

import (
	_ "github.com/tessera-llm/tessera/worker/model/bert"
	_ "github.com/tessera-llm/tessera/worker/model/bloom"
	_ "github.com/tessera-llm/tessera/worker/model/chatglm"
	_ "github.com/tessera-llm/tessera/worker/model/llama"
	_ "github.com/tessera-llm/tessera/worker/model/marian"
)
