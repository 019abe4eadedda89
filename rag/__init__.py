"""kbqa's core: settings, embeddings, store, retrieval, LLM and the RAG chain."""
