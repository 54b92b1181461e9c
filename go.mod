module github.com/tessera-llm/tessera

go 1.26
