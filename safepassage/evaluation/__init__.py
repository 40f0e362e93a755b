"""Evaluation harness: verification and identification error rates in NIST FRTE / ISO/IEC 19795 terms."""
