module github.com/tessera-llm/tessera/kernels/cpu/internal/asmgen

go 1.26.0
