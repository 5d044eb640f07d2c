"""The model on disk: fastembed's model folder and the Hugging Face scEmbed layout."""
