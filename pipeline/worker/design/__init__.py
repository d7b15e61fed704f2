"""Ad-copy design with an LLM: the prompt, the HTML sanitiser, and the LLM clients."""
