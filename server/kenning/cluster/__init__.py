"""kenning.cluster"""
