"""kenning.lsp.features"""
