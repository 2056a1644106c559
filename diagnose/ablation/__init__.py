"""The ablation harness: counterfactual runs over seeds, resumable, local or on Ray."""
