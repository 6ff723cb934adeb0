"""From words heard to what they mean.

- `templates`: Home Assistant's English sentences and ours, and this home's slot lists.
- `wordgraph`: hassil templates to a minimal word graph. `grammar`: the home's closed set
  (`build_grammar`, cached by content), what the recognisers are held to.
- `grammar_build`: the compile in a child process. `closed_words`: every word any home's
  closed set may hold. `nlu`: hassil over the same templates, text to an intent with slots.
"""
