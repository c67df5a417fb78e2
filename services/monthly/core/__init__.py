"""services/monthly/core: pure forecasting (``forecast``, ``prophet_map``), the daily series
(``series``), debouncing rules and keys (``debounce``), backtest protocols and baselines
(``backtest``), the components plot (``plot``) and the ports (``ports``)."""
