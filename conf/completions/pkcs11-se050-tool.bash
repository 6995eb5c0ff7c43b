_pkcs11__se050__tool() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="pkcs11__se050__tool"
                ;;
            pkcs11__se050__tool,help)
                cmd="pkcs11__se050__tool__subcmd__help"
                ;;
            pkcs11__se050__tool,scp03-rotate)
                cmd="pkcs11__se050__tool__subcmd__scp03__subcmd__rotate"
                ;;
            pkcs11__se050__tool__subcmd__help,help)
                cmd="pkcs11__se050__tool__subcmd__help__subcmd__help"
                ;;
            pkcs11__se050__tool__subcmd__help,scp03-rotate)
                cmd="pkcs11__se050__tool__subcmd__help__subcmd__scp03__subcmd__rotate"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        pkcs11__se050__tool)
            opts="-h -V --help --version scp03-rotate help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pkcs11__se050__tool__subcmd__help)
            opts="scp03-rotate help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pkcs11__se050__tool__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pkcs11__se050__tool__subcmd__help__subcmd__scp03__subcmd__rotate)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        pkcs11__se050__tool__subcmd__scp03__subcmd__rotate)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _pkcs11__se050__tool -o nosort -o bashdefault -o default pkcs11-se050-tool
else
    complete -F _pkcs11__se050__tool -o bashdefault -o default pkcs11-se050-tool
fi
