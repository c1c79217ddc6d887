"""The data sets shipped with rewardbench_nb (see CARD.md); installed as `rewardbench_nb._data`."""
