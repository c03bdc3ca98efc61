# bash completion for trainctl                              -*- shell-script -*-
#
# Installed as bash-completion's trainctl (loaded on first use). The
# candidates come from trainctl itself (`trainctl __complete -- WORD...`):
# its verbs and flags from its own tables, job ids and dataset names from
# traind on the socket the line names (--socket) or the default one. A line
# ":files" asks for file names.

_trainctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]}
	local line files=0 out
	local -a cands=()

	out=$("${COMP_WORDS[0]}" __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
	while IFS= read -r line; do
		[[ -z $line ]] && continue
		if [[ $line == ":files" ]]; then
			files=1
			continue
		fi
		cands+=("${line%%$'\t'*}")
	done <<<"$out"
	[[ $cur == "=" ]] && cur=
	COMPREPLY=()
	if ((files)); then
		compopt -o filenames 2>/dev/null
		local IFS=$'\n'
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
	local c
	for c in "${cands[@]}"; do
		[[ $c == "$cur"* ]] && COMPREPLY+=("$c")
	done
	return 0
}
complete -F _trainctl trainctl
