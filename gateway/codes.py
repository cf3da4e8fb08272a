"""Every wire code of the exchange, as enums with their French labels.

One catalogue serves the pre-flight checks, the DUDE emulator, the store, the command line, the
API and the console: a reject code is written once here (brief §4) and nowhere else. Each
`RejectCode` carries its level (envelope or event), a French label, a hint telling support staff
what to correct in Parcours 3, and the Parcours 3 field(s) usually involved.
"""

from __future__ import annotations

from enum import Enum


class _Labelled(str, Enum):
    """A wire code (the enum value) with a French label."""

    label: str

    def __new__(cls, value: str, label: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    def __str__(self) -> str:  # f-strings and logs show the wire code
        return self.value


def label_of(enum: type[Enum], value: str | None) -> str:
    """``value``'s French label in ``enum`` (a state, a type, a reject code), as the console and the command
    line show it; a value the catalogue does not know (written by a later version), as it is; None, nothing."""
    if value is None:
        return ""
    try:
        return enum(value).label
    except ValueError:
        return value


class EventType(_Labelled):
    """Parcours 3 event types (brief §3) and their DUDE element names."""

    ENT = ("ENT", "Entretien")
    PFO = ("PFO", "Proposition de formation")
    EFO = ("EFO", "Entrée en formation")
    MER = ("MER", "Mise en relation sur une offre")
    PPR = ("PPR", "Proposition de prestation")
    EPR = ("EPR", "Entrée en prestation")
    PEM = ("PEM", "Période d'emploi")
    SOR = ("SOR", "Sortie de co-traitance")
    MAN = ("MAN", "Manquement")
    CPA = ("CPA", "Changement de parcours")

    @property
    def element(self) -> str:
        """The DUDE XML element carrying this type."""
        return _ELEMENTS[self.value]


_ELEMENTS = {
    "ENT": "Entretien",
    "PFO": "PropositionFormation",
    "EFO": "EntreeFormation",
    "MER": "MiseEnRelation",
    "PPR": "PropositionPrestation",
    "EPR": "EntreePrestation",
    "PEM": "PeriodeEmploi",
    "SOR": "SortieCotraitance",
    "MAN": "Manquement",
    "CPA": "ChangementParcours",
}
ELEMENT_TO_TYPE = {element: EventType(code) for code, element in _ELEMENTS.items()}


class Operation(_Labelled):
    CREATE = ("C", "Création")
    MODIFY = ("M", "Modification")
    CANCEL = ("A", "Annulation")


class Modalite(_Labelled):
    IND = ("IND", "Entretien individuel")
    COL = ("COL", "Atelier collectif")
    TEL = ("TEL", "Entretien téléphonique")
    MEL = ("MEL", "Échange par e-mail")


class TypeContrat(_Labelled):
    CDD = ("CDD", "Contrat à durée déterminée")
    CTT = ("CTT", "Contrat de travail temporaire")
    CAE = ("CAE", "Contrat d'accompagnement dans l'emploi")
    CIE = ("CIE", "Contrat initiative emploi")
    APP = ("APP", "Contrat d'apprentissage")
    PRO = ("PRO", "Contrat de professionnalisation")


#: Contracts whose period must have an end date (brief §3, PEM).
CONTRACTS_WITH_END = frozenset({TypeContrat.CDD, TypeContrat.CTT})


class Resultat(_Labelled):
    ATT = ("ATT", "En attente de réponse")
    RET = ("RET", "Retenu, embauché")
    NRE = ("NRE", "Non retenu")
    ABA = ("ABA", "Abandon de la candidature")


class Parcours(_Labelled):
    ACC = ("ACC", "Recherche accompagnée")
    MOB = ("MOB", "Mobilisation")
    ACT = ("ACT", "Recherche active")


class MotifSortie(_Labelled):
    EMP = ("EMP", "Emploi durable")
    FQU = ("FQU", "Formation qualifiante")
    ABA = ("ABA", "Abandon")
    DEM = ("DEM", "Déménagement")
    AGE = ("AGE", "Limite d'âge atteinte")
    AUT = ("AUT", "Autre motif")


class MotifManquement(_Labelled):
    ABS = ("ABS", "Absence à un entretien")
    REF = ("REF", "Refus d'une offre")
    AUT = ("AUT", "Autre manquement")


class EventState(_Labelled):
    """States of an event in the store (brief §5)."""

    RECU = ("RECU", "Reçu (export ou API), pas encore contrôlé")
    INVALIDE = ("INVALIDE", "Invalide (contrôle avant envoi)")
    EN_ATTENTE = ("EN_ATTENTE", "En attente d'envoi")
    # Said of an event sealed while sending is paused too: in a signed envelope, not yet posted.
    ENVOYE = ("ENVOYE", "Dans un lot signé, sans accusé de réception du DUDE pour l'instant")
    TRANSMIS = ("TRANSMIS", "Transmis, accusé de réception reçu")
    ACCEPTE = ("ACCEPTE", "Accepté par le DUDE")
    REJETE = ("REJETE", "Rejeté par le DUDE")
    SANS_REPONSE = ("SANS_REPONSE", "Sans compte rendu du DUDE")
    CORRIGE = ("CORRIGE", "Corrigé, remplacé par une nouvelle version")
    CLOS = ("CLOS", "Clos par le support")


#: States after which nothing more happens without a person acting.
FINAL_EVENT_STATES = frozenset(
    {EventState.INVALIDE, EventState.ACCEPTE, EventState.REJETE, EventState.SANS_REPONSE,
     EventState.CORRIGE, EventState.CLOS}
)
#: States support staff may resend or close.
ACTIONABLE_EVENT_STATES = frozenset(
    {EventState.INVALIDE, EventState.REJETE, EventState.SANS_REPONSE}
)


class EnvelopeState(_Labelled):
    """States of an envelope (brief §5). Labels agree with "lot", the word the console and the command line use
    (they agreed with "enveloppe": "Lot … : Traitée"); each also reads as a step of its history."""

    SIGNE = ("SIGNE", "Signé, pas encore envoyé")
    ENVOYE = ("ENVOYE", "Envoyé ou à renvoyer, sans accusé de réception")
    RECU = ("RECU", "Reçu par le DUDE, compte rendu attendu")
    REJETE = ("REJETE", "Rejeté en bloc par le DUDE")
    TRAITE = ("TRAITE", "Traité, compte rendu reçu et rapproché")
    SANS_REPONSE = ("SANS_REPONSE", "Pas de compte rendu dans le délai")
    QUARANTAINE = ("QUARANTAINE", "Mis en quarantaine : le DUDE le refuse à chaque envoi (HTTP 500), "
                                  "ses événements repartent en lots plus petits")


#: Envelope states awaiting DUDE's receipt: sealed, or sent without a receipt back. They are sent (again, with the
#: same IdLot) by the next run or the scheduler; a run that ends with some is ``TERMINE_SANS_ACCUSE``.
AWAITING_RECEIPT = (EnvelopeState.SIGNE.value, EnvelopeState.ENVOYE.value)


class Level(str, Enum):
    ENVELOPE = "envelope"
    EVENT = "event"


class RejectCode(str, Enum):
    """The reject catalogue (brief §4): one code, one level, one label, one hint for support staff."""

    level: Level
    label: str
    hint: str
    fields: tuple[str, ...]

    def __new__(cls, value: str, level: Level, label: str, hint: str, fields: tuple[str, ...] = ()):
        member = str.__new__(cls, value)
        member._value_ = value
        member.level = level
        member.label = label
        member.hint = hint
        member.fields = fields
        return member

    def __str__(self) -> str:
        return self.value

    L01 = ("L01", Level.ENVELOPE, "Signature absente ou invalide",
           "Le lot a été modifié après signature ou signé avec une autre clé. Rien à corriger dans "
           "Parcours 3 : prévenir l'intégrateur, qui vérifie la clé de la passerelle, puis renvoyer.")
    L02 = ("L02", Level.ENVELOPE, "Certificat inconnu, pas encore valide ou expiré",
           "Le certificat de la passerelle n'est pas (ou plus) reconnu par le DUDE. Rien à corriger "
           "dans Parcours 3 : l'intégrateur renouvelle ou fait enregistrer le certificat, puis renvoie.")
    L03 = ("L03", Level.ENVELOPE, "XML mal formé ou construction interdite (DTD, entité)",
           "Le lot n'est pas un XML lisible. Rien à corriger dans Parcours 3 : signaler l'incident "
           "à l'intégrateur, puis renvoyer ses événements une fois la cause levée.")
    L04 = ("L04", Level.ENVELOPE, "Lot non conforme au schéma XSD",
           "Le lot ne respecte pas le schéma d'échange. Rien à corriger dans Parcours 3 : vérifier la "
           "version du schéma avec l'intégrateur, puis renvoyer les événements une fois la passerelle "
           "corrigée (ils ne repartent pas d'eux-mêmes).")
    L05 = ("L05", Level.ENVELOPE, "Nombre d'événements de l'en-tête différent du contenu",
           "Incident technique de constitution du lot : prévenir l'intégrateur, puis renvoyer.")
    L06 = ("L06", Level.ENVELOPE, "Émetteur non autorisé",
           "Le code émetteur de la passerelle n'est pas habilité par le DUDE. Rien à corriger dans "
           "Parcours 3 : l'intégrateur vérifie le paramètre d'émetteur, puis renvoyer les événements.")
    L07 = ("L07", Level.ENVELOPE, "Lot trop volumineux",
           "Le lot dépasse la taille acceptée : l'intégrateur réduit le nombre d'événements par lot, "
           "puis renvoie.")
    E01 = ("E01", Level.EVENT, "Demandeur d'emploi inconnu",
           "L'identifiant France Travail du jeune est inconnu du DUDE. Corriger l'identifiant "
           "dans le dossier du jeune dans Parcours 3 : la version corrigée part d'elle-même avec le "
           "prochain export. Renvoyer seulement si l'identifiant était juste et le dossier du DUDE en "
           "retard.", ("identifiant_pe",))
    E02 = ("E02", Level.EVENT, "Demandeur d'emploi non confié à cette mission locale",
           "Le jeune n'est pas (ou plus) en co-traitance avec cette mission locale. Vérifier "
           "l'orientation et la mission locale du dossier ; clore l'événement si le jeune a été "
           "confié à une autre structure.", ("code_ml", "identifiant_pe"))
    E03 = ("E03", Level.EVENT, "Identité différente du dossier du demandeur d'emploi",
           "Le nom, le prénom ou la date de naissance ne correspondent pas au dossier du DUDE. "
           "Vérifier l'identité du jeune dans Parcours 3 (orthographe, date de naissance) : une "
           "correction part d'elle-même avec le prochain export. Renvoyer seulement si Parcours 3 "
           "était juste et le dossier du DUDE a été corrigé.", ("nom", "prenom", "date_naissance"))
    E04 = ("E04", Level.EVENT, "Date de l'événement dans le futur ou avant le début de la co-traitance",
           "Corriger la date de l'événement dans Parcours 3 : elle ne peut être ni postérieure à "
           "aujourd'hui ni antérieure à l'orientation du jeune vers la mission locale.",
           ("date_evenement",))
    E05 = ("E05", Level.EVENT, "Même identifiant et même version déjà reçus avec un autre contenu",
           "Le DUDE a déjà reçu cette version de l'événement avec un contenu différent. Modifier "
           "l'événement dans Parcours 3 pour qu'il parte en nouvelle version.", ())
    E06 = ("E06", Level.EVENT, "Modification ou annulation d'un événement inconnu",
           "L'événement modifié ou annulé n'a jamais été accepté par le DUDE. Saisir l'événement "
           "en création dans Parcours 3, ou clore celui-ci.", ("operation", "id_evenement"))
    E07 = ("E07", Level.EVENT, "Âge hors de la tranche 16–25 ans à la date de l'événement",
           "Vérifier la date de naissance et la date de l'événement dans Parcours 3 ; si elles "
           "sont justes, le jeune ne relève plus de la co-traitance : clore l'événement.",
           ("date_naissance", "date_evenement"))
    E08 = ("E08", Level.EVENT, "SIRET invalide",
           "Le numéro SIRET de l'employeur est faux (14 chiffres, clé de contrôle). Le corriger "
           "dans Parcours 3 à partir de la fiche de l'entreprise : la version corrigée part "
           "d'elle-même avec le prochain export.", ("siret",))
    E09 = ("E09", Level.EVENT, "Champ absent ou mal formé pour ce type d'événement",
           "Un champ obligatoire manque ou n'a pas le bon format. Le message indique lequel : le "
           "compléter ou le corriger dans Parcours 3 ; la version corrigée part d'elle-même avec "
           "le prochain export.", ())
    E10 = ("E10", Level.EVENT, "Date de fin antérieure à la date de début",
           "Corriger la date de début ou la date de fin de la période dans Parcours 3 : la version "
           "corrigée part d'elle-même avec le prochain export.", ("date_debut", "date_fin"))
