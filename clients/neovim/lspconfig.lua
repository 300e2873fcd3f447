-- kenning with nvim-lspconfig (it has no built-in entry for kenning; this adds one).
-- Put this in your init.lua. The :KenningSearch / :KenningSimilar commands come from
-- require("kenning").setup({ autostart = false }) with clients/neovim on 'runtimepath'.
local configs = require("lspconfig.configs")
local util = require("lspconfig.util")

if not configs.kenning then
  configs.kenning = {
    default_config = {
      cmd = { "kenning", "lsp" },
      -- No filetypes: lspconfig then attaches to buffers of every filetype.
      root_dir = util.root_pattern(".git", ".kenningignore", "pyproject.toml", "package.json"),
      single_file_support = false,
      init_options = {},
      settings = { kenning = {} },
    },
  }
end

require("lspconfig").kenning.setup({
  init_options = { search = { k = 20 } },
})
