"""Releases: gates against the champion, promotion, canary rollout, rollback, images."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.release._ab_report import ABReport, VariantResult, ab_report
    from modelyard.release._build import (
        DEFAULT_BASE_IMAGE,
        BuildContext,
        build_image,
        write_context,
    )
    from modelyard.release._canary import RENEW_EVERY_S, run_canary, stop_canary
    from modelyard.release._canary_config import (
        CanarySettings,
        canary_settings,
        parse_canary_config,
    )
    from modelyard.release._canary_gates import CanaryGates
    from modelyard.release._canary_judge import Breach, CanaryProgress, CanaryResult, StepResult
    from modelyard.release._check import GateReport, check_release
    from modelyard.release._engine import Engine, detect_engine
    from modelyard.release._gates import Gate, GateResult, parse_gate, parse_release_config
    from modelyard.release._promote import Promotion, promote, rollback
    from modelyard.release._records import ReleaseRecord, current_actor, record, release_history
    from modelyard.release._steps import CheckProgress

__all__ = [
    "ABReport",
    "Breach",
    "BuildContext",
    "CanaryGates",
    "CanaryProgress",
    "CanaryResult",
    "CanarySettings",
    "CheckProgress",
    "DEFAULT_BASE_IMAGE",
    "Engine",
    "Gate",
    "GateReport",
    "GateResult",
    "Promotion",
    "RENEW_EVERY_S",
    "ReleaseRecord",
    "StepResult",
    "VariantResult",
    "ab_report",
    "build_image",
    "canary_settings",
    "check_release",
    "current_actor",
    "detect_engine",
    "parse_canary_config",
    "parse_gate",
    "parse_release_config",
    "promote",
    "record",
    "release_history",
    "rollback",
    "run_canary",
    "stop_canary",
    "write_context",
]

_EXPORTS = {
    "modelyard.release._ab_report": ["ABReport", "VariantResult", "ab_report"],
    "modelyard.release._build": [
        "DEFAULT_BASE_IMAGE",
        "BuildContext",
        "build_image",
        "write_context",
    ],
    "modelyard.release._canary": ["RENEW_EVERY_S", "run_canary", "stop_canary"],
    "modelyard.release._canary_config": [
        "CanarySettings",
        "canary_settings",
        "parse_canary_config",
    ],
    "modelyard.release._canary_gates": ["CanaryGates"],
    "modelyard.release._canary_judge": ["Breach", "CanaryProgress", "CanaryResult", "StepResult"],
    "modelyard.release._check": ["GateReport", "check_release"],
    "modelyard.release._engine": ["Engine", "detect_engine"],
    "modelyard.release._gates": ["Gate", "GateResult", "parse_gate", "parse_release_config"],
    "modelyard.release._promote": ["Promotion", "promote", "rollback"],
    "modelyard.release._records": ["ReleaseRecord", "current_actor", "record", "release_history"],
    "modelyard.release._steps": ["CheckProgress"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
