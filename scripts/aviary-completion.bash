# bash completion for aviary. Load it with:
#   source <(aviary completion bash)
# or install it as /etc/bash_completion.d/aviary. `aviary completion bash` prints this file,
# compiled into the binary, so the two cannot drift apart.

_aviary_first_column() {
    # The first column of `aviary ARGS`'s table, asked of the server the command line names
    # (or the default); silent and quick when it is not running.
    local server=()
    local i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        if [[ ${COMP_WORDS[i]} == --server ]]; then
            server=(--server "${COMP_WORDS[i + 1]}")
        fi
    done
    timeout 2 aviary "${server[@]}" "$@" 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_aviary_nodes() {
    _aviary_first_column nodes
}

_aviary() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local global="--server --token --json --help"
    local commands="serve worker store version nodes acquire renew release free who history maintenance
        with-lease upgrade install-snapshot canary run-action actions jobs job logs notifications
        probes probe alarms silences silence supervise completion"
    local submit="--owner --ttl --reason --wait --logs"

    # The command is the first word that is not an option or an option's value.
    local command="" sub="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --server | --token) ((i++)) ;;
            -*) ;;
            *)
                if [[ -z $command ]]; then
                    command=${words[i]}
                elif [[ -z $sub ]]; then
                    sub=${words[i]}
                fi
                ;;
        esac
    done

    # After "--", with-lease and supervise run a command: complete that command instead.
    if [[ $command == with-lease || $command == supervise ]]; then
        for ((i = 1; i < cword; i++)); do
            if [[ ${words[i]} == -- ]]; then
                if declare -F _command_offset >/dev/null; then
                    _command_offset $((i + 1))
                else
                    COMPREPLY=($(compgen -c -- "$cur"))
                fi
                return
            fi
        done
    fi

    case $prev in
        --server) COMPREPLY=($(compgen -W "http://127.0.0.1:1337" -- "$cur")); return ;;
        --driver) COMPREPLY=($(compgen -W "sim helm" -- "$cur")); return ;;
        --chain) COMPREPLY=($(compgen -W "nodeos geth lotus sim none" -- "$cur")); return ;;
        --restart) COMPREPLY=($(compgen -W "always on-failure never" -- "$cur")); return ;;
        --state)
            COMPREPLY=($(compgen -W "queued running succeeded failed cancelling cancelled timed_out" -- "$cur"))
            return
            ;;
        --node) COMPREPLY=($(compgen -W "$(_aviary_nodes)" -- "$cur")); return ;;
        --config | --password-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data-dir | --state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --token | --label | --count | --owner | --ttl | --wait | --reason | --note | \
            --image-tag | --limit | --listen | --param | --from | --to | --store | --name | \
            --control | --proxy | --upstream | --tail | --sender | --level | --contains | \
            --since | --until) return ;;
        --kind) COMPREPLY=($(compgen -W "logs notifications all" -- "$cur")); return ;;
    esac

    local flags=""
    case $command in
        "")
            COMPREPLY=($(compgen -W "$commands $global" -- "$cur"))
            return
            ;;
        serve) flags="--config --listen --data-dir --store --insecure" ;;
        worker) flags="--config --store --data-dir" ;;
        store)
            case $sub in
                "") COMPREPLY=($(compgen -W "copy" -- "$cur")); return ;;
                copy) flags="--from --to --config --password-file --replace" ;;
            esac
            ;;
        version | who | probes) flags="" ;;
        nodes)
            case $sub in
                "") flags="--label add remove" ;;
                add) flags="--driver --image-tag --label --note" ;;
                remove) [[ $cur != -* ]] && COMPREPLY=($(compgen -W "$(_aviary_nodes)" -- "$cur")) && return ;;
            esac
            ;;
        acquire) flags="--label --count --owner --ttl --wait --exclusive --reason" ;;
        renew) flags="--ttl" ;;
        release) flags="--owner" ;;
        free) flags="--force --owner" ;;
        history) flags="--limit" ;;
        logs) flags="--kind --sender --level --contains --since --until --limit -f --follow" ;;
        notifications) flags="--sender --level --contains --since --until --limit -f --follow" ;;
        maintenance)
            flags="--reason"
            if [[ -n $sub && $cur != -* ]]; then
                COMPREPLY=($(compgen -W "on off" -- "$cur"))
                return
            fi
            ;;
        with-lease) flags="--label --count --owner --ttl --wait --reason --" ;;
        upgrade | install-snapshot) flags=$submit ;;
        run-action) flags="--param $submit" ;;
        canary)
            case $sub in
                "") COMPREPLY=($(compgen -W "create delete" -- "$cur")); return ;;
                *) flags=$submit ;;
            esac
            ;;
        jobs) flags="--node --state --limit" ;;
        alarms)
            case $sub in
                "") COMPREPLY=($(compgen -W "notifications" -- "$cur")); return ;;
                notifications) flags="--limit" ;;
            esac
            ;;
        silences) flags="--ended" ;;
        silence)
            case $sub in
                "") COMPREPLY=($(compgen -W "add expire" -- "$cur")); return ;;
                add) flags="--for --reason" ;;
                expire)
                    if [[ $cur != -* && $prev == "$sub" ]]; then
                        COMPREPLY=($(compgen -W "$(_aviary_first_column silences)" -- "$cur"))
                        return
                    fi
                    ;;
            esac
            ;;
        probe)
            case $sub in
                "") COMPREPLY=($(compgen -W "run runs" -- "$cur")); return ;;
                run) flags="--config" ;;
                runs) flags="--limit" ;;
            esac
            if [[ $cur != -* && $prev == "$sub" ]]; then
                COMPREPLY=($(compgen -W "$(_aviary_first_column probes)" -- "$cur"))
                return
            fi
            ;;
        job)
            case $sub in
                "") COMPREPLY=($(compgen -W "show logs cancel retry wait" -- "$cur")); return ;;
                logs) flags="-f --follow --from" ;;
                retry) flags="--wait --logs" ;;
                wait) flags="--logs" ;;
            esac
            ;;
        supervise)
            case $sub in
                ctl)
                    flags="--control --token --sync --tail"
                    if [[ $cur != -* ]]; then
                        COMPREPLY=($(compgen -W "maintenance resume reload safely_reload status logs healthz" -- "$cur"))
                        return
                    fi
                    ;;
                *) flags="ctl --config --chain --name --control --proxy --upstream --data-dir --state-dir --restart --" ;;
            esac
            ;;
        completion) COMPREPLY=($(compgen -W "bash" -- "$cur")); return ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags $global" -- "$cur"))
        return
    fi
    case $command in
        acquire | release | free | history | maintenance | with-lease | upgrade | \
            install-snapshot | run-action)
            if [[ -z $sub ]]; then
                COMPREPLY=($(compgen -W "$(_aviary_nodes)" -- "$cur"))
            elif [[ $command == run-action && ${words[cword - 1]} == "$sub" ]]; then
                COMPREPLY=($(compgen -W "$(_aviary_first_column actions)" -- "$cur"))
            fi
            ;;
        job)
            if [[ -n $sub && ${words[cword - 1]} == "$sub" ]]; then
                COMPREPLY=($(compgen -W "$(_aviary_first_column jobs --limit 20)" -- "$cur"))
            fi
            ;;
        nodes) [[ -z $sub ]] && COMPREPLY=($(compgen -W "add remove" -- "$cur")) ;;
        canary)
            # canary create|delete NODE: the node is the word after the subcommand.
            if [[ ${words[cword - 1]} == create || ${words[cword - 1]} == delete ]]; then
                COMPREPLY=($(compgen -W "$(_aviary_nodes)" -- "$cur"))
            fi
            ;;
    esac
}

complete -F _aviary aviary
