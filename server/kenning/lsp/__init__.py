"""kenning.lsp"""
