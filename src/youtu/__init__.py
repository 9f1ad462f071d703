"""youtu: the Youtu-LLM system (MLA model, tokenizer, curriculum, agentic synthesis, training,
evaluation, serving) as one package. Start with `youtu --help` or README.md."""

__version__ = "0.1.0"
