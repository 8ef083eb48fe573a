/* The tiktoken rank files, compiled into the binary (see
   third_party/tiktoken-vocab/README.md). TG_VOCAB_DIR is set by CMake. */
#define STR2(x) #x
#define STR(x) STR2(x)
    .section .rodata
    .balign 16
    .global tg_vocab_cl100k_begin
    .global tg_vocab_cl100k_end
tg_vocab_cl100k_begin:
    .incbin STR(TG_VOCAB_DIR/cl100k_base.tiktoken)
tg_vocab_cl100k_end:
    .balign 16
    .global tg_vocab_o200k_begin
    .global tg_vocab_o200k_end
tg_vocab_o200k_begin:
    .incbin STR(TG_VOCAB_DIR/o200k_base.tiktoken)
tg_vocab_o200k_end:
    .section .note.GNU-stack,"",@progbits
