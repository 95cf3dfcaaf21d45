"""The monitoring mixin: alert rules (and the dashboards' settings) generated from code.

    python -m mixin.alerts                  # write alerts.yml and the PrometheusRule
    python -m mixin.alerts --check          # exit 1 if either differs from what is committed
    python -m mixin.alerts --tests-out DIR  # also write the generated promtool tests to DIR

mixin/settings.py is the settings mechanism (a frozen dataclass, a YAML file, --set flags,
unknown settings refused) for any generator here, the dashboards' included.
"""
