"""The joiner: radiographs meet the clinical data known at their time."""
